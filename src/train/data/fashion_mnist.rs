//! Fashion-MNIST (Xiao et al., 2017; MIT) from Debian's `dataset-fashion-mnist` package:
//! gzip-compressed IDX files, 60,000 training and 10,000 test images of 28x28 grey pixels.

use std::io::Read;
use std::path::{Path, PathBuf};

#[cfg(test)]
use burn::tensor::{Device, Tensor, TensorData};
use flate2::read::GzDecoder;

use crate::error::{Result, VarError};

/// Where `apt-get install dataset-fashion-mnist` puts the files.
pub const DEFAULT_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Label order of the dataset.
pub use crate::config::FASHION_MNIST_CLASSES as CLASS_NAMES;

/// Side of the stored images.
pub const SIDE: usize = 28;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

impl Split {
    fn files(self) -> (&'static str, &'static str) {
        match self {
            Split::Train => ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
            Split::Test => ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
        }
    }
}

/// Images (row-major bytes, 0 = background) and their labels.
pub struct FashionMnist {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
}

fn bad(path: &Path, what: String) -> VarError {
    VarError::InvalidArgument(format!("{}: {what}", path.display()))
}

/// Parses an IDX file: big-endian magic `0x0000_08_<rank>` (unsigned bytes), `rank` u32
/// dimensions, then the bytes. Checks the rank and that the data is exactly as long as the
/// dimensions say.
fn parse_idx(bytes: &[u8], rank: usize, path: &Path) -> Result<(Vec<usize>, Vec<u8>)> {
    let header = 4 + 4 * rank;
    if bytes.len() < header {
        return Err(bad(path, "is too short to be an IDX file".into()));
    }
    if bytes[0..3] != [0, 0, 0x08] || bytes[3] as usize != rank {
        return Err(bad(
            path,
            format!("is not an IDX file of unsigned bytes with {rank} dimensions"),
        ));
    }
    let dims: Vec<usize> = bytes[4..header]
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect();
    let n = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad(path, "has impossible dimensions".into()))?;
    if bytes.len() - header != n {
        return Err(bad(
            path,
            format!(
                "holds {} data bytes but its header promises {n} (dimensions {dims:?}); the file is truncated or corrupt",
                bytes.len() - header
            ),
        ));
    }
    Ok((dims, bytes[header..].to_vec()))
}

fn read_gz(path: &Path) -> Result<Vec<u8>> {
    let file = std::fs::File::open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            VarError::InvalidArgument(format!(
                "{} is missing: install Fashion-MNIST with `apt-get install dataset-fashion-mnist` (or pass --data DIR)",
                path.display()
            ))
        } else {
            VarError::io(path, e)
        }
    })?;
    let mut out = Vec::new();
    GzDecoder::new(file)
        .read_to_end(&mut out)
        .map_err(|e| bad(path, format!("is not a readable gzip file ({e})")))?;
    Ok(out)
}

impl FashionMnist {
    /// Loads one split from `dir` (the Debian package's folder by default).
    pub fn load(dir: &Path, split: Split) -> Result<Self> {
        let (img_name, lbl_name) = split.files();
        let (img_path, lbl_path): (PathBuf, PathBuf) = (dir.join(img_name), dir.join(lbl_name));
        let (dims, images) = parse_idx(&read_gz(&img_path)?, 3, &img_path)?;
        let (ldims, labels) = parse_idx(&read_gz(&lbl_path)?, 1, &lbl_path)?;
        if dims[1..] != [SIDE, SIDE] {
            return Err(bad(&img_path, format!("holds {dims:?} images, not 28x28")));
        }
        if ldims[0] != dims[0] {
            return Err(bad(
                &lbl_path,
                format!("has {} labels for {} images", ldims[0], dims[0]),
            ));
        }
        if let Some(l) = labels.iter().find(|&&l| l as usize >= CLASS_NAMES.len()) {
            return Err(bad(&lbl_path, format!("has label {l}; classes are 0..9")));
        }
        Ok(Self { images, labels })
    }

    /// Whether `dir` holds the dataset's files (rather than, say, an image folder).
    pub fn is_in(dir: &Path) -> bool {
        dir.join(Split::Train.files().0).is_file()
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// The first `count` images.
    pub fn first(&self, count: usize) -> Self {
        let count = count.min(self.len());
        Self {
            images: self.images[..count * SIDE * SIDE].to_vec(),
            labels: self.labels[..count].to_vec(),
        }
    }

    /// The images at `indices`, in that order.
    pub fn pick(&self, indices: &[usize]) -> Self {
        let px = SIDE * SIDE;
        Self {
            images: indices
                .iter()
                .flat_map(|&i| &self.images[i * px..(i + 1) * px])
                .copied()
                .collect(),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
        }
    }

    /// Image `i` as a grey picture.
    pub fn image(&self, i: usize) -> image::DynamicImage {
        let px = self.images[i * SIDE * SIDE..(i + 1) * SIDE * SIDE].to_vec();
        image::GrayImage::from_raw(SIDE as u32, SIDE as u32, px)
            .expect("28x28 bytes")
            .into()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The images at `indices` as `[B, 3, size, size]` in [-1, 1]: grey replicated to RGB
    /// (the models are RGB like the official ones) and centred on a `size` canvas (28 → 32
    /// pads 2 background pixels on every side). The trainers go through `ImageSet`; this
    /// direct padding is what the tests check `ImageSet`'s fit against.
    #[cfg(test)]
    pub fn batch(&self, indices: &[usize], size: usize, device: &Device) -> Tensor<4> {
        let pad = size.saturating_sub(SIDE) / 2;
        let plane = size * size;
        let mut out = vec![-1f32; indices.len() * 3 * plane];
        for (b, &i) in indices.iter().enumerate() {
            let img = &self.images[i * SIDE * SIDE..(i + 1) * SIDE * SIDE];
            for y in 0..SIDE.min(size) {
                for x in 0..SIDE.min(size) {
                    let v = img[y * SIDE + x] as f32 / 127.5 - 1.0;
                    for c in 0..3 {
                        out[(b * 3 + c) * plane + (y + pad) * size + x + pad] = v;
                    }
                }
            }
        }
        Tensor::from_data(TensorData::new(out, [indices.len(), 3, size, size]), device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(magic_rank: u8, dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut v = vec![0, 0, 8, magic_rank];
        for d in dims {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn parses_and_checks_idx_headers() {
        let p = Path::new("x");
        let (dims, data) = parse_idx(&idx(1, &[3], &[1, 2, 3]), 1, p).unwrap();
        assert_eq!((dims, data), (vec![3], vec![1, 2, 3]));
        let err = parse_idx(&idx(1, &[4], &[1, 2, 3]), 1, p)
            .unwrap_err()
            .to_string();
        assert!(err.contains("truncated or corrupt"), "{err}");
        let err = parse_idx(&idx(3, &[1, 1, 1], &[0]), 1, p)
            .unwrap_err()
            .to_string();
        assert!(err.contains("1 dimensions"), "{err}");
        assert!(parse_idx(&[0, 0], 1, p).is_err());
        let err = parse_idx(&idx(2, &[u32::MAX, u32::MAX], &[]), 2, p);
        assert!(err.is_err());
    }

    #[test]
    fn missing_dataset_names_the_package() {
        let err = FashionMnist::load(Path::new("/nonexistent"), Split::Test)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("apt-get install dataset-fashion-mnist"),
            "{err}"
        );
    }

    #[test]
    fn loads_the_test_split_and_pads_to_32() {
        let dir = Path::new(DEFAULT_DIR);
        if !dir.exists() {
            panic!("Fashion-MNIST is not installed: run ./scripts/setup.sh");
        }
        let data = FashionMnist::load(dir, Split::Test).unwrap();
        assert_eq!(data.len(), 10_000);
        assert_eq!(data.images.len(), 10_000 * 28 * 28);
        // Every class appears 1,000 times in the test split.
        let mut counts = [0; 10];
        data.labels.iter().for_each(|&l| counts[l as usize] += 1);
        assert_eq!(counts, [1000; 10]);
        let batch = data.batch(&[0, 1], 32, &Device::flex());
        assert_eq!(batch.dims(), [2, 3, 32, 32]);
        let v = batch
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(v[0], -1.0, "the padding is background");
        assert!(v.iter().all(|x| (-1.0..=1.0).contains(x)));
        assert!(v.iter().any(|&x| x > 0.5), "the garment is there");
    }
}
