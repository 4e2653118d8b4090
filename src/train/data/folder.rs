//! An image folder as training data: one subfolder per class (the ImageFolder convention),
//! PNG and JPEG files inside, class names from the subfolders' names in sorted order.
//!
//! Every file is untrusted: it is decoded under [`crate::picture::decode`]'s limits (the
//! header is checked before any pixel buffer exists), and a file that does not decode is
//! skipped and named, never a crash. What the folder would take in memory once fitted is
//! checked before anything is decoded.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{DataOptions, DataRecord, ImageSet, TrainingData};
use crate::config::limits::MAX_CLASSES;
use crate::error::{Result, VarError};
use crate::hash::fnv1a;
use crate::rng::Rng;

/// What the fitted images of one folder may take in memory.
pub const MAX_DATA_BYTES: usize = 8 << 30;

/// The most one image's decoding may allocate (a 10k x 10k RGBA picture is 400 MB).
pub const MAX_IMAGE_ALLOC: u64 = 512 << 20;

/// A file of the folder that is not in the data, and why.
#[derive(Clone, Debug)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

/// A file that may be an image of class `label`.
struct Candidate {
    path: PathBuf,
    label: u16,
    len: u64,
}

fn is_hidden(name: &std::ffi::OsStr) -> bool {
    name.to_string_lossy().starts_with('.')
}

/// The entries of `dir` sorted by name, hidden ones (`.DS_Store`, `.git`) left out.
fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let read = std::fs::read_dir(dir).map_err(|e| VarError::io(dir, e))?;
    let mut paths = Vec::new();
    for entry in read {
        let entry = entry.map_err(|e| VarError::io(dir, e))?;
        if !is_hidden(&entry.file_name()) {
            paths.push(entry.path());
        }
    }
    paths.sort();
    Ok(paths)
}

/// The class names and every file that may be an image, with what was left out on the way.
fn scan(dir: &Path) -> Result<(Vec<String>, Vec<Candidate>, Vec<Skipped>)> {
    let entries = sorted_entries(dir)?;
    let (class_dirs, loose): (Vec<PathBuf>, Vec<PathBuf>) =
        entries.into_iter().partition(|p| p.is_dir());
    if class_dirs.is_empty() {
        return Err(VarError::InvalidArgument(format!(
            "{} has no class folders{}: put each class's images in a subfolder of its own ({}/<class>/*.png)",
            dir.display(),
            if loose.is_empty() {
                String::new()
            } else {
                format!(" (only {} loose files)", loose.len())
            },
            dir.display()
        )));
    }
    if class_dirs.len() > MAX_CLASSES.min(u16::MAX as usize) {
        return Err(VarError::InvalidArgument(format!(
            "{} has {} class folders; at most {} are supported",
            dir.display(),
            class_dirs.len(),
            MAX_CLASSES.min(u16::MAX as usize)
        )));
    }
    let mut skipped: Vec<Skipped> = loose
        .into_iter()
        .map(|path| Skipped {
            path,
            reason: "not inside a class folder".into(),
        })
        .collect();
    let mut classes = Vec::new();
    let mut candidates = Vec::new();
    for (label, class_dir) in class_dirs.iter().enumerate() {
        let name = class_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        classes.push(name);
        for path in sorted_entries(class_dir)? {
            let skip = |reason: &str| Skipped {
                path: path.clone(),
                reason: reason.into(),
            };
            // Follows symlinks: a linked image is read, a link to anything but a file is not.
            let meta = match std::fs::metadata(&path) {
                Ok(m) => m,
                Err(e) => {
                    skipped.push(skip(&format!("unreadable ({e})")));
                    continue;
                }
            };
            let ext = path
                .extension()
                .map(|e| e.to_string_lossy().to_ascii_lowercase());
            if meta.is_dir() {
                skipped.push(skip("a folder inside a class folder (not read)"));
            } else if !meta.is_file() {
                skipped.push(skip("not a regular file"));
            } else if !matches!(ext.as_deref(), Some("png" | "jpg" | "jpeg")) {
                skipped.push(skip("not a .png, .jpg or .jpeg file"));
            } else {
                candidates.push(Candidate {
                    path,
                    label: label as u16,
                    len: meta.len(),
                });
            }
        }
    }
    Ok((classes, candidates, skipped))
}

/// A fitted image, or why its file was skipped.
type Fitted = std::result::Result<Vec<u8>, String>;

/// Decodes and fits every candidate on all cores.
fn decode_all(candidates: &[Candidate], opts: &DataOptions) -> Vec<Fitted> {
    let next = AtomicUsize::new(0);
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut results: Vec<Option<Fitted>> = (0..candidates.len()).map(|_| None).collect();
    let done: Vec<Vec<(usize, Fitted)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(c) = candidates.get(i) else { break };
                        let fitted = crate::picture::decode(&c.path, MAX_IMAGE_ALLOC)
                            .map(|img| crate::picture::fit_rgb(&img, opts.image_size, opts.fit))
                            .map_err(|e| format!("not an image this program reads: {e}"));
                        mine.push((i, fitted));
                    }
                    mine
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("decoding does not panic"))
            .collect()
    });
    for (i, r) in done.into_iter().flatten() {
        results[i] = Some(r);
    }
    results
        .into_iter()
        .map(|r| r.expect("every index was taken"))
        .collect()
}

/// Which of a class's `n` images (in path order) are held out: `round(share * n)` of them,
/// drawn from the seed and the class name, and never all (each class keeps a training image).
fn held_out(n: usize, share: f64, seed: u64, class: &str) -> Vec<bool> {
    let count = ((share * n as f64).round() as usize).min(n.saturating_sub(1));
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = Rng::new(seed ^ fnv1a(class.as_bytes()));
    for i in (1..n).rev() {
        order.swap(i, rng.below(i + 1));
    }
    let mut test = vec![false; n];
    order[..count].iter().for_each(|&i| test[i] = true);
    test
}

/// Loads an image folder ([`TrainingData::load`] sends folders here).
pub fn load(dir: &Path, opts: &DataOptions) -> Result<TrainingData> {
    if !(0.0..1.0).contains(&opts.test_share) {
        return Err(VarError::InvalidArgument(
            "--test-share must be in [0, 1)".into(),
        ));
    }
    let (classes, candidates, mut skipped) = scan(dir)?;
    let per_image = opts.image_size * opts.image_size * 3;
    let need = candidates.len().saturating_mul(per_image);
    if need > MAX_DATA_BYTES {
        return Err(VarError::InvalidArgument(format!(
            "{}: its {} images fitted to {} px would take {:.1} GiB, more than the {} GiB training holds in memory; use fewer images or a smaller --image-size",
            dir.display(),
            candidates.len(),
            opts.image_size,
            need as f64 / (1u64 << 30) as f64,
            MAX_DATA_BYTES >> 30
        )));
    }
    let decoded = decode_all(&candidates, opts);
    let mut good: Vec<(&Candidate, Vec<u8>)> = Vec::with_capacity(candidates.len());
    for (c, r) in candidates.iter().zip(decoded) {
        match r {
            Ok(px) => good.push((c, px)),
            Err(reason) => skipped.push(Skipped {
                path: c.path.clone(),
                reason,
            }),
        }
    }
    let mut split = vec![false; good.len()];
    for (label, name) in classes.iter().enumerate() {
        let members: Vec<usize> = (0..good.len())
            .filter(|&i| good[i].0.label as usize == label)
            .collect();
        if members.is_empty() {
            let bad = skipped
                .iter()
                .filter(|s| s.path.starts_with(dir.join(name)))
                .count();
            return Err(VarError::InvalidArgument(format!(
                "{} holds no readable PNG or JPEG image{}; add images or remove the folder",
                dir.join(name).display(),
                if bad > 0 {
                    format!(" ({bad} files skipped)")
                } else {
                    String::new()
                }
            )));
        }
        let test = held_out(members.len(), opts.test_share, opts.split_seed, name);
        for (&i, t) in members.iter().zip(test) {
            split[i] = t;
        }
    }
    let mut fingerprint_text = String::new();
    let (mut train_px, mut train_labels, mut test_px, mut test_labels) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for ((c, px), &is_test) in good.iter().zip(&split) {
        let rel = c.path.strip_prefix(dir).unwrap_or(&c.path);
        fingerprint_text.push_str(&format!("{}\0{}\0{is_test}\n", rel.display(), c.len));
        if is_test {
            test_px.extend_from_slice(px);
            test_labels.push(c.label);
        } else {
            train_px.extend_from_slice(px);
            train_labels.push(c.label);
        }
    }
    let files: Vec<(PathBuf, bool)> = good
        .iter()
        .zip(&split)
        .map(|((c, _), &t)| (c.path.clone(), t))
        .collect();
    drop(good);
    let record = DataRecord {
        source: "folder".into(),
        classes,
        fit: opts.fit,
        image_size: opts.image_size,
        split_seed: opts.split_seed,
        train_images: train_labels.len(),
        test_images: test_labels.len(),
        files_fingerprint: Some(format!("{:016x}", fnv1a(fingerprint_text.as_bytes()))),
    };
    Ok(TrainingData {
        train: ImageSet::new(opts.image_size, train_px, train_labels),
        test: ImageSet::new(opts.image_size, test_px, test_labels),
        record,
        skipped,
        files,
    })
}

/// Writes the first `per_class` images of each of `classes` (labels; all when empty) of a
/// Fashion-MNIST split as `out/<class>/<index>.png` (28x28 grey; "T-shirt/top" becomes
/// "T-shirt-top"): an image folder made from data every machine here has, for examples and
/// tests. Returns the number of files written.
pub fn write_fashion_mnist(
    data: &super::FashionMnist,
    out: &Path,
    per_class: usize,
    classes: &[usize],
) -> Result<usize> {
    if let Some(c) = classes.iter().find(|&&c| c >= super::CLASS_NAMES.len()) {
        return Err(VarError::InvalidArgument(format!(
            "Fashion-MNIST has the labels 0 to 9, not {c}"
        )));
    }
    let mut written = vec![0usize; super::CLASS_NAMES.len()];
    for i in 0..data.len() {
        let label = data.labels[i] as usize;
        if (!classes.is_empty() && !classes.contains(&label)) || written[label] >= per_class {
            continue;
        }
        let class_dir = out.join(super::CLASS_NAMES[label].replace('/', "-"));
        std::fs::create_dir_all(&class_dir).map_err(|e| VarError::io(&class_dir, e))?;
        let png =
            crate::picture::encode_grey_png(&data.images[i * 28 * 28..(i + 1) * 28 * 28], 28, 28)?;
        crate::files::write_atomically(&class_dir.join(format!("{i:05}.png")), &png)?;
        written[label] += 1;
    }
    Ok(written.iter().sum())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Fit;
    use crate::train::data::{DEFAULT_DIR, FashionMnist, Split};
    use image::{DynamicImage, GrayImage, Luma, Rgb, RgbImage, Rgba, RgbaImage};

    fn opts(size: usize) -> DataOptions {
        DataOptions {
            image_size: size,
            fit: Fit::Crop,
            split_seed: 7,
            test_share: 0.25,
        }
    }

    fn save(path: &Path, img: DynamicImage) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        img.save(path).unwrap();
    }

    /// Two classes of mixed sizes and modes, and every kind of file that must be skipped.
    fn messy_folder(root: &Path) {
        for i in 0..4u8 {
            // Class "a": wide grey PNGs and RGBA PNGs, bright.
            save(
                &root.join(format!("a/grey{i}.png")),
                GrayImage::from_pixel(40 + i as u32, 20, Luma([200 + i])).into(),
            );
            save(
                &root.join(format!("a/rgba{i}.PNG")),
                RgbaImage::from_pixel(9, 9, Rgba([250, 250, 250, 10])).into(),
            );
            // Class "b": tall RGB JPEGs, dark.
            save(
                &root.join(format!("b/photo{i}.jpg")),
                RgbImage::from_pixel(12, 30, Rgb([10, 20, 30])).into(),
            );
        }
        let b = root.join("b");
        std::fs::write(b.join("truncated.png"), {
            let mut bytes = std::fs::read(root.join("a/grey0.png")).unwrap();
            bytes.truncate(bytes.len() / 2);
            bytes
        })
        .unwrap();
        std::fs::write(
            b.join("huge.png"),
            crate::picture::test_images::png_header_only(20_000, 20_000),
        )
        .unwrap();
        std::fs::write(b.join("noise.jpeg"), b"not a jpeg at all").unwrap();
        std::fs::write(b.join("notes.txt"), b"hello").unwrap();
        std::fs::write(b.join(".DS_Store"), b"hidden").unwrap();
        std::fs::create_dir_all(b.join("nested")).unwrap();
        std::fs::write(root.join("README.md"), b"loose").unwrap();
    }

    #[test]
    fn a_messy_folder_loads_what_it_can_and_names_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        messy_folder(dir.path());
        let data = load(dir.path(), &opts(8)).unwrap();
        assert_eq!(data.record.classes, ["a", "b"]);
        assert_eq!(data.record.train_images + data.record.test_images, 12);
        // 25% of each class held out: 2 of a's 8, 1 of b's 4.
        assert_eq!(data.record.test_images, 3);
        let reasons: Vec<(String, String)> = data
            .skipped
            .iter()
            .map(|s| {
                let name = s.path.file_name().unwrap().to_string_lossy().into_owned();
                (name, s.reason.clone())
            })
            .collect();
        let reason_of = |name: &str| {
            reasons
                .iter()
                .find(|(n, _)| n == name)
                .unwrap_or_else(|| panic!("{name} not skipped: {reasons:?}"))
                .1
                .clone()
        };
        assert_eq!(reasons.len(), 6, "{reasons:?}");
        assert!(reason_of("truncated.png").contains("not an image"));
        assert!(reason_of("huge.png").contains("not an image"));
        assert!(reason_of("noise.jpeg").contains("not an image"));
        assert!(reason_of("notes.txt").contains("not a .png"));
        assert!(reason_of("nested").contains("folder inside"));
        assert!(reason_of("README.md").contains("class folder"));
        assert!(data.summary().contains("skipped 6 files"));
        // Every image is fitted to 8x8 RGB, and each class looks like itself.
        assert_eq!(data.train.side(), 8);
        for set in [&data.train, &data.test] {
            for i in 0..set.len() {
                let mean = set.rgb(i).iter().map(|&v| v as f64).sum::<f64>() / 192.0;
                match set.label(i) {
                    0 => assert!(mean > 190.0, "class a is bright: {mean}"),
                    _ => assert!(mean < 40.0, "class b is dark: {mean}"),
                }
            }
        }
        // The split is the seed's: the same again, another with another seed.
        let again = load(dir.path(), &opts(8)).unwrap();
        assert_eq!(again.record, data.record);
        assert_eq!(again.files, data.files);
        let other = load(
            dir.path(),
            &DataOptions {
                split_seed: 8,
                ..opts(8)
            },
        )
        .unwrap();
        assert_ne!(other.files, data.files);
        assert!(data.record.check_resumes(&other.record).is_err());
    }

    #[test]
    fn a_changed_folder_does_not_resume_a_run() {
        let dir = tempfile::tempdir().unwrap();
        messy_folder(dir.path());
        let before = load(dir.path(), &opts(8)).unwrap().record;
        save(
            &dir.path().join("b/extra.png"),
            RgbImage::from_pixel(8, 8, Rgb([0, 0, 0])).into(),
        );
        let added = load(dir.path(), &opts(8)).unwrap().record;
        let err = added.check_resumes(&before).unwrap_err().to_string();
        assert!(err.contains("other images"), "{err}");
        save(
            &dir.path().join("c/one.png"),
            RgbImage::from_pixel(8, 8, Rgb([0, 0, 0])).into(),
        );
        let more = load(dir.path(), &opts(8)).unwrap().record;
        let err = more.check_resumes(&before).unwrap_err().to_string();
        assert!(
            err.contains("classes [a, b] but --data has [a, b, c]"),
            "{err}"
        );
        assert!(more.check_resumes(&more.clone()).is_ok());
    }

    #[test]
    fn folders_without_images_are_refused_in_one_sentence() {
        let dir = tempfile::tempdir().unwrap();
        let err = load(dir.path(), &opts(8)).err().unwrap().to_string();
        assert!(err.contains("has no class folders"), "{err}");
        std::fs::write(dir.path().join("x.png"), b"loose").unwrap();
        let err = load(dir.path(), &opts(8)).err().unwrap().to_string();
        assert!(err.contains("only 1 loose files"), "{err}");
        save(&dir.path().join("good/1.png"), RgbImage::new(4, 4).into());
        std::fs::create_dir_all(dir.path().join("empty")).unwrap();
        std::fs::write(dir.path().join("empty/bad.png"), b"broken").unwrap();
        let err = load(dir.path(), &opts(8)).err().unwrap().to_string();
        assert!(
            err.contains("empty holds no readable PNG or JPEG image (1 files skipped)"),
            "{err}"
        );
        let missing = load(&dir.path().join("nope"), &opts(8)).err().unwrap();
        assert!(missing.to_string().contains("nope"), "{missing}");
    }

    /// The smallest baseline JPEG with four components (CMYK, as print workflows write them):
    /// one 8x8 block per component, every coefficient zero, so every sample is 128.
    fn cmyk_jpeg() -> Vec<u8> {
        let mut j = vec![0xFF, 0xD8];
        let segment = |j: &mut Vec<u8>, marker: u8, body: &[u8]| {
            j.extend_from_slice(&[0xFF, marker]);
            j.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
            j.extend_from_slice(body);
        };
        let mut dqt = vec![0u8];
        dqt.extend([1u8; 64]);
        segment(&mut j, 0xDB, &dqt);
        let mut sof = vec![8, 0, 8, 0, 8, 4];
        for id in 1..=4 {
            sof.extend_from_slice(&[id, 0x11, 0]);
        }
        segment(&mut j, 0xC0, &sof);
        // One Huffman code each, of length 1: DC "difference 0", AC "end of block".
        for class in [0x00u8, 0x10] {
            let mut dht = vec![class, 1];
            dht.extend([0u8; 15]);
            dht.push(0);
            segment(&mut j, 0xC4, &dht);
        }
        segment(&mut j, 0xDA, &[4, 1, 0, 2, 0, 3, 0, 4, 0, 0, 63, 0]);
        j.push(0x00); // four blocks of two 0 bits
        j.extend_from_slice(&[0xFF, 0xD9]);
        j
    }

    #[test]
    fn a_cmyk_jpeg_is_read_as_rgb() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("print")).unwrap();
        std::fs::write(dir.path().join("print/cmyk.jpg"), cmyk_jpeg()).unwrap();
        let data = load(dir.path(), &opts(8)).unwrap();
        assert!(data.skipped.is_empty(), "{:?}", data.skipped);
        let px = data.train.rgb(0);
        assert_eq!(px.len(), 8 * 8 * 3);
        // A flat block decodes to one colour, the same in every pixel.
        assert!(px.chunks_exact(3).all(|p| p == &px[..3]), "{:?}", &px[..6]);
    }

    #[test]
    fn fashion_mnist_as_a_folder_is_fashion_mnist() {
        let data = FashionMnist::load(Path::new(DEFAULT_DIR), Split::Test)
            .expect("Fashion-MNIST is not installed: run ./scripts/setup.sh");
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            write_fashion_mnist(&data, dir.path(), 2, &[0, 9]).unwrap(),
            4
        );
        let fit = Fit::Pad { border: 2 };
        let loaded = load(
            dir.path(),
            &DataOptions {
                fit,
                test_share: 0.0,
                ..opts(32)
            },
        )
        .unwrap();
        // Folder order: "Ankle boot" (label 9) before "T-shirt-top" (label 0).
        assert_eq!(loaded.record.classes, ["Ankle boot", "T-shirt-top"]);
        let firsts = |label: u8| -> Vec<usize> {
            (0..data.len())
                .filter(|&i| data.labels[i] == label)
                .take(2)
                .collect()
        };
        let expected: Vec<usize> = firsts(9).into_iter().chain(firsts(0)).collect();
        let device = burn::tensor::Device::flex();
        let from_folder = loaded.train.batch(&[0, 1, 2, 3], &device).into_data();
        let from_idx = data.batch(&expected, 32, &device).into_data();
        assert_eq!(from_folder, from_idx, "the PNGs hold the dataset's pixels");
        let err = write_fashion_mnist(&data, dir.path(), 1, &[10]).unwrap_err();
        assert!(err.to_string().contains("not 10"), "{err}");
    }
}
