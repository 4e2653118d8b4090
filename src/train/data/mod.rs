//! What the trainers learn from: Fashion-MNIST (the built-in default) or a folder of one's own
//! images, either way fitted once to the model's resolution by the rule its config records
//! ([`Fit`], the rule editing applies too) and held in memory as an [`ImageSet`].
//!
//! Decoding and fitting happen once, at load, on every core: a training step then only copies
//! its batch out of memory (32 images of 64 px are 400 KB), so the data cannot starve a step.
//! What a run was trained on is recorded ([`DataRecord`], `data.json` in its checkpoint) so a
//! resume with another folder or class list is refused.

mod fashion_mnist;
pub mod folder;

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

pub use self::fashion_mnist::{CLASS_NAMES, DEFAULT_DIR, FashionMnist, SIDE, Split};
pub use self::folder::Skipped;
use crate::config::Fit;
use crate::error::{Result, VarError};

/// The name of the data record in a checkpoint.
pub const DATA_FILE: &str = "data.json";

/// Labelled RGB images of one side, as the models take them.
pub struct ImageSet {
    side: usize,
    /// `side`² RGB8 pixels per image, row-major.
    pixels: Vec<u8>,
    labels: Vec<u16>,
}

impl ImageSet {
    pub fn new(side: usize, pixels: Vec<u8>, labels: Vec<u16>) -> Self {
        assert_eq!(
            pixels.len(),
            labels.len() * side * side * 3,
            "one image per label"
        );
        Self {
            side,
            pixels,
            labels,
        }
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn side(&self) -> usize {
        self.side
    }

    pub fn label(&self, i: usize) -> usize {
        self.labels[i] as usize
    }

    /// Image `i` as `side`² RGB8 pixels.
    pub fn rgb(&self, i: usize) -> &[u8] {
        let n = self.side * self.side * 3;
        &self.pixels[i * n..(i + 1) * n]
    }

    /// The images at `indices` as `[B, 3, side, side]` in [-1, 1].
    pub fn batch(&self, indices: &[usize], device: &Device) -> Tensor<4> {
        let plane = self.side * self.side;
        let mut out = vec![0f32; indices.len() * 3 * plane];
        for (b, &i) in indices.iter().enumerate() {
            for (p, px) in self.rgb(i).chunks_exact(3).enumerate() {
                for c in 0..3 {
                    out[(b * 3 + c) * plane + p] = px[c] as f32 / 127.5 - 1.0;
                }
            }
        }
        let shape = [indices.len(), 3, self.side, self.side];
        Tensor::from_data(TensorData::new(out, shape), device)
    }

    /// Fashion-MNIST's images fitted to `size` by `fit` (the preset: 28 px on 32 with a 2 px
    /// border, pixel for pixel what the dataset holds).
    pub fn from_fashion_mnist(data: &FashionMnist, size: usize, fit: Fit) -> Self {
        let mut pixels = Vec::with_capacity(data.len() * size * size * 3);
        if fit.inner_side(size) == SIDE && size >= SIDE {
            // The garments as they are, on black: what `fit_rgb` gives without a resize, at
            // a hundredth of its cost (70,000 images at every trainer's start).
            let at = (size - SIDE) / 2;
            for i in 0..data.len() {
                let mut canvas = vec![0u8; size * size * 3];
                let grey = &data.images[i * SIDE * SIDE..(i + 1) * SIDE * SIDE];
                for (y, row) in grey.chunks_exact(SIDE).enumerate() {
                    for (x, &v) in row.iter().enumerate() {
                        let p = ((y + at) * size + x + at) * 3;
                        canvas[p..p + 3].fill(v);
                    }
                }
                pixels.extend(canvas);
            }
        } else {
            for i in 0..data.len() {
                pixels.extend(crate::picture::fit_rgb(&data.image(i), size, fit));
            }
        }
        Self::new(
            size,
            pixels,
            data.labels.iter().map(|&l| l as u16).collect(),
        )
    }

    /// The first `count` images.
    pub fn first(&self, count: usize) -> Self {
        let count = count.min(self.len());
        let n = self.side * self.side * 3;
        Self::new(
            self.side,
            self.pixels[..count * n].to_vec(),
            self.labels[..count].to_vec(),
        )
    }
}

/// What a run was trained on, kept in its checkpoint and compared when it resumes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataRecord {
    /// `fashion-mnist`, or `folder` for an image folder.
    pub source: String,
    /// The classes in label order (an image folder's subfolder names, sorted).
    pub classes: Vec<String>,
    pub fit: Fit,
    pub image_size: usize,
    /// The seed of the train/test split (folders only; Fashion-MNIST has its own split).
    pub split_seed: u64,
    pub train_images: usize,
    pub test_images: usize,
    /// FNV-1a of every image's path, length and split (folders only): another folder, or the
    /// same one with images added or removed, has another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files_fingerprint: Option<String>,
}

impl DataRecord {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("plain JSON")
    }

    /// Refuses to resume `saved` (the checkpoint's record) on this data, naming the difference.
    pub fn check_resumes(&self, saved: &DataRecord) -> Result<()> {
        let refuse = |what: String| {
            Err(VarError::InvalidArgument(format!(
                "{what}; resume with the data the run began with, or start a new --out"
            )))
        };
        if saved.source != self.source {
            return refuse(format!(
                "the run was trained on {} but --data is {}",
                saved.source, self.source
            ));
        }
        if saved.classes != self.classes {
            return refuse(format!(
                "the run was trained on the classes [{}] but --data has [{}]",
                saved.classes.join(", "),
                self.classes.join(", ")
            ));
        }
        if saved.fit != self.fit || saved.image_size != self.image_size {
            return refuse("the run fitted its images another way (--fit or size)".into());
        }
        if saved.files_fingerprint != self.files_fingerprint {
            return refuse(format!(
                "--data holds other images than the run was trained on ({} training and {} test images then, {} and {} now, or the same count of other files)",
                saved.train_images, saved.test_images, self.train_images, self.test_images
            ));
        }
        Ok(())
    }

    /// The record of a checkpoint; `None` for runs written before records existed (they
    /// trained on Fashion-MNIST).
    pub fn read(checkpoint: &Path) -> Result<Option<Self>> {
        let path = checkpoint.join(DATA_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| VarError::Json {
                    path: path.display().to_string(),
                    message: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(VarError::io(&path, e)),
        }
    }
}

/// Fashion-MNIST's own fit: its 28 px garments on the model's side, with a border of a
/// sixteenth of it (2 px on the preset's 32, the garment as the dataset holds it).
pub fn fashion_mnist_fit(size: usize) -> Fit {
    Fit::Pad { border: size / 16 }
}

/// The fit of the data in `dir` for a model of `size` px: the one asked for, else the one
/// the model records, else Fashion-MNIST's own for its files and the centred square for a
/// folder.
pub fn fit_for(dir: &Path, asked: Option<Fit>, recorded: Option<Fit>, size: usize) -> Fit {
    asked.or(recorded).unwrap_or_else(|| {
        if FashionMnist::is_in(dir) {
            fashion_mnist_fit(size)
        } else {
            Fit::Crop
        }
    })
}

/// How to split and fit an image folder (Fashion-MNIST brings its own split).
#[derive(Clone, Copy, Debug)]
pub struct DataOptions {
    pub image_size: usize,
    pub fit: Fit,
    pub split_seed: u64,
    /// Share of each class held out as the test split.
    pub test_share: f64,
}

/// A training set, its test split, what they are, and the files left out.
pub struct TrainingData {
    pub train: ImageSet,
    pub test: ImageSet,
    pub record: DataRecord,
    pub skipped: Vec<Skipped>,
    /// Every image used, and whether it is in the test split (folders only).
    pub files: Vec<(std::path::PathBuf, bool)>,
}

impl TrainingData {
    /// Fashion-MNIST when `dir` holds its IDX files, otherwise an image folder with one
    /// subfolder per class ([`folder::load`]).
    pub fn load(dir: &Path, opts: &DataOptions) -> Result<Self> {
        if !FashionMnist::is_in(dir) && dir.is_dir() {
            return folder::load(dir, opts);
        }
        let fit = |split| {
            FashionMnist::load(dir, split)
                .map(|d| ImageSet::from_fashion_mnist(&d, opts.image_size, opts.fit))
        };
        let (train, test) = (fit(Split::Train)?, fit(Split::Test)?);
        let record = DataRecord {
            source: "fashion-mnist".into(),
            classes: CLASS_NAMES.iter().map(|s| s.to_string()).collect(),
            fit: opts.fit,
            image_size: opts.image_size,
            split_seed: 0,
            train_images: train.len(),
            test_images: test.len(),
            files_fingerprint: None,
        };
        Ok(Self {
            train,
            test,
            record,
            skipped: Vec::new(),
            files: Vec::new(),
        })
    }

    /// Writes `data.txt` ([`Self::summary`]) and, for a folder, `split.csv` (every image and
    /// its split) into the run directory `out`: derived records for the person, rewritten on
    /// every start.
    pub fn write_records(&self, out: &Path) -> Result<()> {
        crate::files::write_atomically(&out.join("data.txt"), self.summary().as_bytes())?;
        if !self.files.is_empty() {
            let mut csv = String::from("split,path\n");
            for (path, test) in &self.files {
                let split = if *test { "test" } else { "train" };
                csv.push_str(&format!("{split},{}\n", path.display()));
            }
            crate::files::write_atomically(&out.join("split.csv"), csv.as_bytes())?;
        }
        Ok(())
    }

    /// One line for the terminal: what was loaded, and where the skipped files are named.
    pub fn headline(&self, out: &Path) -> String {
        let r = &self.record;
        let mut line = format!(
            "{}: {} classes, {} training and {} test images at {} px",
            r.source,
            r.classes.len(),
            r.train_images,
            r.test_images,
            r.image_size
        );
        if !self.skipped.is_empty() {
            line.push_str(&format!(
                "; {} files skipped, named in {}",
                self.skipped.len(),
                out.join("data.txt").display()
            ));
        }
        line
    }

    /// One paragraph for the run's `data.txt`: the classes, the split and every file skipped.
    pub fn summary(&self) -> String {
        let r = &self.record;
        let mut text = format!(
            "{} classes ({}); {} training and {} test images, fitted to {} px by --fit {}\n",
            r.classes.len(),
            r.classes.join(", "),
            r.train_images,
            r.test_images,
            r.image_size,
            r.fit
        );
        if !self.skipped.is_empty() {
            text.push_str(&format!("skipped {} files:\n", self.skipped.len()));
            for s in &self.skipped {
                text.push_str(&format!("{}: {}\n", s.path.display(), s.reason));
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_preset_fit_is_the_datasets_own_pixels_padded() {
        let dir = Path::new(DEFAULT_DIR);
        let data = FashionMnist::load(dir, Split::Test)
            .expect("Fashion-MNIST is not installed: run ./scripts/setup.sh");
        let set = ImageSet::from_fashion_mnist(&data, 32, Fit::Pad { border: 2 });
        let device = Device::flex();
        let ours = set.batch(&[0, 7], &device).into_data();
        let direct = data.batch(&[0, 7], 32, &device).into_data();
        assert_eq!(
            ours, direct,
            "the general fit and the dataset's padding agree"
        );
        assert_eq!(set.label(7), data.labels[7] as usize);
        // The fast path is the general fit's result, pixel for pixel.
        let first = data.first(3);
        let fast = ImageSet::from_fashion_mnist(&first, 32, Fit::Pad { border: 2 });
        for i in 0..3 {
            let general = crate::picture::fit_rgb(&first.image(i), 32, Fit::Pad { border: 2 });
            assert_eq!(fast.rgb(i), &general[..]);
        }
    }
}
