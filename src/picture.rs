//! Image files for the command line: reading a picture or a mask at the model's resolution
//! (defensively: an upload is untrusted), and writing PNGs (the crate's one encoder) and
//! grids of them atomically.
//!
//! Any aspect ratio is accepted: the image is cropped to its centred square, then resized to
//! the model's side with a triangle filter (which averages when shrinking). A mask goes through
//! the same crop and resize, so it must have the image's width and height.

use std::path::Path;

use image::imageops::FilterType;
use image::{DynamicImage, ImageReader, Limits};

use crate::config::Fit;
use crate::error::{Result, VarError};
use crate::files::write_atomically;

/// RGB images of `size`² laid out `cols` per row, with a 2-pixel grey gutter, as PNG bytes.
pub fn grid_png(images: &[Vec<u8>], size: usize, cols: usize) -> Result<Vec<u8>> {
    let cols = cols.max(1);
    let rows = images.len().div_ceil(cols);
    let gap = 2;
    let (w, h) = (cols * (size + gap) + gap, rows * (size + gap) + gap);
    let mut px = vec![96u8; w * h * 3];
    for (i, img) in images.iter().enumerate() {
        let (x0, y0) = (
            gap + (i % cols) * (size + gap),
            gap + (i / cols) * (size + gap),
        );
        for y in 0..size {
            let dst = ((y0 + y) * w + x0) * 3;
            px[dst..dst + size * 3].copy_from_slice(&img[y * size * 3..(y + 1) * size * 3]);
        }
    }
    encode_png(&px, w, h)
}

/// RGB8 pixels → PNG bytes: the crate's one PNG encoder (the `image` crate's).
pub fn encode_png(rgb: &[u8], width: usize, height: usize) -> Result<Vec<u8>> {
    encode(rgb, width, height, image::ExtendedColorType::Rgb8)
}

/// Grey (L8) pixels → PNG bytes.
pub fn encode_grey_png(grey: &[u8], width: usize, height: usize) -> Result<Vec<u8>> {
    encode(grey, width, height, image::ExtendedColorType::L8)
}

fn encode(
    px: &[u8],
    width: usize,
    height: usize,
    kind: image::ExtendedColorType,
) -> Result<Vec<u8>> {
    use image::ImageEncoder;
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(px, width as u32, height as u32, kind)
        .map_err(|e| VarError::InvalidArgument(format!("PNG encoding: {e}")))?;
    Ok(out)
}

/// The largest width or height read (a 16k-pixel side is already 1 GiB of RGBA).
pub const MAX_SIDE: u32 = 16_384;

/// An image fitted to the model: `size`² RGB8 pixels, and what was done to get there.
pub struct Fitted {
    pub rgb: Vec<u8>,
    /// Width and height of the file.
    pub original: (u32, u32),
    /// The file's pixels, for giving an edit back in its geometry ([`unfit_rgb`]).
    pub source: image::RgbImage,
}

impl Fitted {
    /// One sentence on how the file became the model's input under `rule`.
    pub fn describe(&self, size: usize, rule: Fit) -> String {
        let (w, h) = self.original;
        let inner = rule.inner_side(size);
        let crop = if w == h {
            String::new()
        } else {
            let s = w.min(h);
            format!("cropped to its centred {s}x{s} square and ")
        };
        let placed = match rule {
            Fit::Crop => String::new(),
            Fit::Pad { border } => format!(" on a {size}x{size} black canvas ({border} px border)"),
        };
        if w as usize == inner && h as usize == inner {
            format!("used as is ({inner}x{inner}){placed}")
        } else {
            format!("{w}x{h}, {crop}resized to {inner}x{inner}{placed}")
        }
    }
}

/// The largest picture or mask file the command line reads (a 16,384 px square photo is far
/// smaller).
pub const MAX_FILE_BYTES: u64 = 256 << 20;

/// What decoding a picture file of `len` bytes may allocate: what its size can justify. PNG's
/// deflate expands at most 1032:1 and a JPEG of a real photo about 10:1, so 1032 times the
/// file plus 64 MiB (any real photo's pixels) holds every genuine picture, while a small file
/// that claims a huge canvas (a decompression bomb) is refused before its pixels exist.
pub fn alloc_budget(len: u64) -> u64 {
    (64u64 << 20)
        .saturating_add(len.saturating_mul(1032))
        .min(512 << 20)
}

fn open(path: &Path, what: &str) -> Result<DynamicImage> {
    let bytes = crate::files::read_regular(path, MAX_FILE_BYTES)?;
    decode_bytes(&bytes, alloc_budget(bytes.len() as u64)).map_err(|e| match e {
        Unreadable::Io(e) => VarError::io(path, e),
        Unreadable::Image(e) => VarError::InvalidArgument(format!(
            "{}: the {what} is not an image this program reads (PNG or JPEG): {e}",
            path.display()
        )),
    })
}

/// Why a file did not decode: it could not be read, or it is not an image within the limits.
pub enum Unreadable {
    Io(std::io::Error),
    Image(String),
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unreadable::Io(e) => write!(f, "{e}"),
            Unreadable::Image(e) => write!(f, "{e}"),
        }
    }
}

/// Decodes a PNG or JPEG (by its content, whatever its name) of at most [`MAX_SIDE`] a side,
/// allocating at most `max_alloc` bytes: the header is checked against the limits before any
/// pixel buffer exists.
pub fn decode(path: &Path, max_alloc: u64) -> std::result::Result<DynamicImage, Unreadable> {
    let open = || {
        ImageReader::open(path)
            .map_err(Unreadable::Io)?
            .with_guessed_format()
            .map_err(Unreadable::Io)
    };
    decode_with_limits(open, max_alloc)
}

/// [`decode`] of a file's bytes (an upload, a fuzzer's input).
pub fn decode_bytes(bytes: &[u8], max_alloc: u64) -> std::result::Result<DynamicImage, Unreadable> {
    let open = || {
        ImageReader::new(std::io::Cursor::new(bytes))
            .with_guessed_format()
            .map_err(Unreadable::Io)
    };
    decode_with_limits(open, max_alloc)
}

/// Reads the header first (one reader), checks the canvas it claims against the limits, and
/// only then decodes (a second reader): the decoders' own limit checks come after they have
/// started reading, and a header alone must not be able to claim the memory.
fn decode_with_limits<R: std::io::BufRead + std::io::Seek>(
    open: impl Fn() -> std::result::Result<ImageReader<R>, Unreadable>,
    max_alloc: u64,
) -> std::result::Result<DynamicImage, Unreadable> {
    let too_large = |w: u32, h: u32| {
        Unreadable::Image(format!(
            "it is {w}x{h} px, more than this program decodes (at most {MAX_SIDE} px a side \
             and {} MiB of pixels for a file of this length)",
            max_alloc >> 20
        ))
    };
    let (w, h) = open()?
        .into_dimensions()
        .map_err(|e| Unreadable::Image(e.to_string()))?;
    if w == 0 || h == 0 {
        return Err(Unreadable::Image(
            "it has no pixels (0 px wide or high)".into(),
        ));
    }
    // Four bytes a pixel: the widest layout the decoders produce for PNG and JPEG at 8 bits.
    if w > MAX_SIDE || h > MAX_SIDE || u64::from(w) * u64::from(h) * 4 > max_alloc {
        return Err(too_large(w, h));
    }
    let mut reader = open()?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(max_alloc);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| {
        Unreadable::Image(match e {
            image::ImageError::Limits(_) => too_large(w, h).to_string(),
            e => e.to_string(),
        })
    })?;
    if img.width() == 0 || img.height() == 0 {
        return Err(Unreadable::Image(
            "it has no pixels (0 px wide or high)".into(),
        ));
    }
    Ok(img)
}

/// The centred square of `img`, resized to `side`² (as is when it already is).
fn square(img: &DynamicImage, side: usize) -> DynamicImage {
    let (w, h) = (img.width(), img.height());
    let s = w.min(h);
    let sq = img.crop_imm((w - s) / 2, (h - s) / 2, s, s);
    if s as usize == side {
        sq
    } else {
        sq.resize_exact(side as u32, side as u32, FilterType::Triangle)
    }
}

/// `img` as the model's `size`² RGB8 input by `rule` (alpha dropped, grey replicated): the
/// one geometry of training data and edited pictures.
pub fn fit_rgb(img: &DynamicImage, size: usize, rule: Fit) -> Vec<u8> {
    fit_channels(img, size, rule, 3)
}

/// [`fit_rgb`] with 3 channels, or 1 (grey: the luma of the fitted square).
fn fit_channels(img: &DynamicImage, size: usize, rule: Fit, channels: usize) -> Vec<u8> {
    let inner = rule.inner_side(size).max(1);
    let sq = square(img, inner);
    let px = if channels == 1 {
        sq.to_luma8().into_raw()
    } else {
        sq.to_rgb8().into_raw()
    };
    if inner == size {
        return px;
    }
    let (at, row) = ((size - inner) / 2, inner * channels);
    let mut out = vec![0u8; size * size * channels];
    for y in 0..inner {
        let dst = ((y + at) * size + at) * channels;
        out[dst..dst + row].copy_from_slice(&px[y * row..(y + 1) * row]);
    }
    out
}

/// The inverse of [`fit_rgb`]: a `size`² RGB8 result of the model given back in the
/// geometry of `source`, the picture it was fitted from. The part of the result that shows
/// the picture (all of it, or the inside of a `pad` border) is resized to the picture's
/// centred square (as is when the sizes match, so a 28 px Fashion-MNIST source comes back
/// pixel-aligned) and pasted over a copy of the picture, whose pixels outside that square the
/// model never saw and are kept.
pub fn unfit_rgb(
    result: &[u8],
    size: usize,
    rule: Fit,
    source: &image::RgbImage,
) -> image::RgbImage {
    let inner = rule.inner_side(size).max(1);
    let at = ((size - inner) / 2) as u32;
    let full = image::RgbImage::from_raw(size as u32, size as u32, result.to_vec())
        .expect("a size x size RGB result");
    let shown = image::imageops::crop_imm(&full, at, at, inner as u32, inner as u32).to_image();
    let (w, h) = source.dimensions();
    let side = w.min(h);
    let square = if side as usize == inner {
        shown
    } else {
        image::imageops::resize(&shown, side, side, FilterType::Triangle)
    };
    let mut out = source.clone();
    image::imageops::replace(
        &mut out,
        &square,
        ((w - side) / 2).into(),
        ((h - side) / 2).into(),
    );
    out
}

/// Reads a picture and fits it to `size`² RGB by `rule` (alpha is dropped; grey becomes RGB).
pub fn read_picture(path: &Path, size: usize, rule: Fit) -> Result<Fitted> {
    let img = open(path, "image")?;
    let original = (img.width(), img.height());
    Ok(Fitted {
        rgb: fit_rgb(&img, size, rule),
        original,
        source: img.to_rgb8(),
    })
}

/// Reads a mask painted over an image of `image_dims` and fits it the same way ([`mask_of`]).
pub fn read_mask(path: &Path, size: usize, image_dims: (u32, u32), rule: Fit) -> Result<Vec<bool>> {
    let img = open(path, "mask")?;
    mask_of(&img, size, image_dims, rule)
        .map_err(|e| VarError::InvalidArgument(format!("{}: {e}", path.display())))
}

/// What a mask is, for the command line's `--mask` and the page's mask files alike: a picture
/// of the source's size, white where the model generates and black where it keeps, read by
/// its luminance (above 127 generates). Alpha is ignored, so a transparent pixel counts by
/// its colour. It is fitted to the model's `size`² by the source's `rule`, so it covers what
/// the model sees of the source. Refused (one sentence) when its size is not `image_dims`.
pub fn mask_of(
    img: &DynamicImage,
    size: usize,
    image_dims: (u32, u32),
    rule: Fit,
) -> std::result::Result<Vec<bool>, String> {
    let dims = (img.width(), img.height());
    if dims != image_dims {
        return Err(format!(
            "the mask is {}x{} but the image is {}x{}; they must match",
            dims.0, dims.1, image_dims.0, image_dims.1
        ));
    }
    Ok(fit_channels(img, size, rule, 1)
        .into_iter()
        .map(|v| v > 127)
        .collect())
}

/// Writes RGB8 pixels as a PNG file, atomically.
pub fn write_png(path: &Path, rgb: &[u8], width: usize, height: usize) -> Result<()> {
    write_atomically(path, &encode_png(rgb, width, height)?)
}

/// `size`² RGB panels side by side, each enlarged (nearest neighbour) to at least 128 px so
/// small models' images can be seen, as PNG bytes.
pub fn side_by_side(panels: &[Vec<u8>], size: usize) -> Result<Vec<u8>> {
    let scale = 128usize.div_ceil(size).max(1);
    let big = size * scale;
    let enlarged: Vec<Vec<u8>> = panels
        .iter()
        .map(|p| {
            let mut out = vec![0u8; big * big * 3];
            for y in 0..big {
                for x in 0..big {
                    let src = ((y / scale) * size + x / scale) * 3;
                    out[(y * big + x) * 3..][..3].copy_from_slice(&p[src..src + 3]);
                }
            }
            out
        })
        .collect();
    grid_png(&enlarged, big, panels.len())
}

/// The image with a translucent red wash where `generate` is true (how the page shows a mask).
pub fn overlay_mask(rgb: &[u8], generate: &[bool]) -> Vec<u8> {
    rgb.chunks_exact(3)
        .zip(generate)
        .flat_map(|(p, &g)| {
            if g {
                [((p[0] as u16 + 255) / 2) as u8, p[1] / 2, p[2] / 2]
            } else {
                [p[0], p[1], p[2]]
            }
        })
        .collect()
}

/// Hand-built files for the readers' tests.
#[cfg(test)]
pub(crate) mod test_images {
    /// A 65-byte PNG claiming `w` x `h` RGB pixels: what a decompression bomb looks like to a
    /// reader that trusts headers.
    pub fn png_header_only(w: u32, h: u32) -> Vec<u8> {
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&w.to_be_bytes());
        ihdr.extend_from_slice(&h.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        let mut chunk = b"IHDR".to_vec();
        chunk.extend_from_slice(&ihdr);
        let crc = crc32(&chunk);
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        out.extend_from_slice(&(ihdr.len() as u32).to_be_bytes());
        out.extend_from_slice(&chunk);
        out.extend_from_slice(&crc.to_be_bytes());
        // One IDAT holding an empty zlib stream, then IEND: enough for a reader to reach the
        // pixel data, which a header-trusting reader would now allocate.
        for (kind, data) in [
            (&b"IDAT"[..], &[0x78, 0x9c, 0x03, 0, 0, 0, 0, 1][..]),
            (b"IEND", &[]),
        ] {
            let mut chunk = kind.to_vec();
            chunk.extend_from_slice(data);
            out.extend_from_slice(&(data.len() as u32).to_be_bytes());
            out.extend_from_slice(&chunk);
            out.extend_from_slice(&crc32(&chunk).to_be_bytes());
        }
        out
    }

    fn crc32(bytes: &[u8]) -> u32 {
        let mut c = 0xFFFF_FFFFu32;
        for &b in bytes {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_file_that_claims_a_huge_canvas_is_refused_before_its_pixels_exist() {
        // 12,000² RGB is 432 MB: within MAX_SIDE, far past what 65 bytes justify.
        let bomb = test_images::png_header_only(12_000, 12_000);
        let Err(Unreadable::Image(e)) = decode_bytes(&bomb, alloc_budget(bomb.len() as u64)) else {
            panic!("a 12,000 px square from {} bytes decoded", bomb.len());
        };
        assert!(
            e.contains("it is 12000x12000 px, more than this program decodes"),
            "{e}"
        );
        assert_eq!(alloc_budget(0), 64 << 20);
        assert_eq!(alloc_budget(1 << 40), 512 << 20);
    }

    #[test]
    fn grid_places_each_image_in_its_cell() {
        let a = vec![255u8; 2 * 2 * 3];
        let b = vec![0u8; 2 * 2 * 3];
        let bytes = grid_png(&[a, b.clone(), b], 2, 2).unwrap();
        let decoded = image::load_from_memory(&bytes).unwrap().to_rgb8();
        let info = (decoded.width(), decoded.height());
        let buf = decoded.into_raw();
        assert_eq!((info.0, info.1), (2 * 4 + 2, 2 * 4 + 2));
        let at = |x: usize, y: usize| buf[(y * info.0 as usize + x) * 3];
        assert_eq!((at(2, 2), at(6, 2), at(2, 6), at(0, 0)), (255, 0, 0, 96));
    }

    fn save(dir: &Path, name: &str, img: DynamicImage) -> std::path::PathBuf {
        let path = dir.join(name);
        img.save(&path).unwrap();
        path
    }

    #[test]
    fn an_edit_comes_back_in_the_sources_geometry() {
        let pad = Fit::Pad { border: 2 };
        // 28 px on a 32 px canvas and back: the identity, pixel for pixel.
        let src =
            image::RgbImage::from_fn(28, 28, |x, y| image::Rgb([x as u8 * 9, y as u8 * 9, 7]));
        let fitted = fit_rgb(&src.clone().into(), 32, pad);
        assert_eq!(&fitted[..3], &[0, 0, 0], "the border is black");
        assert_eq!(unfit_rgb(&fitted, 32, pad, &src), src);
        // A wide source: the model's square lands on its centred square, the sides are kept.
        let wide = image::RgbImage::from_pixel(40, 20, image::Rgb([50, 60, 70]));
        let white = vec![255u8; 32 * 32 * 3];
        let back = unfit_rgb(&white, 32, Fit::Crop, &wide);
        assert_eq!(back.dimensions(), (40, 20));
        assert_eq!(back.get_pixel(9, 10).0, [50, 60, 70]);
        assert_eq!(back.get_pixel(10, 10).0, [255, 255, 255]);
        assert_eq!(back.get_pixel(29, 19).0, [255, 255, 255]);
        assert_eq!(back.get_pixel(30, 0).0, [50, 60, 70]);
    }

    #[test]
    fn pictures_are_centre_cropped_and_resized() {
        let dir = tempfile::tempdir().unwrap();
        // 96x64: the centred 64x64 square is columns 16..80, white; the sides are black.
        let img = image::RgbImage::from_fn(96, 64, |x, _| {
            if (16..80).contains(&x) {
                image::Rgb([255, 255, 255])
            } else {
                image::Rgb([0, 0, 0])
            }
        });
        let path = save(dir.path(), "wide.png", img.into());
        let fitted = read_picture(&path, 32, Fit::Crop).unwrap();
        assert_eq!(fitted.rgb.len(), 32 * 32 * 3);
        assert!(
            fitted.rgb.iter().all(|&v| v == 255),
            "only the centre square is kept"
        );
        assert!(
            fitted
                .describe(32, Fit::Crop)
                .contains("cropped to its centred 64x64 square")
        );

        // A mask of another size is refused; a matching one is thresholded at mid-grey.
        let small = save(dir.path(), "small.png", image::GrayImage::new(8, 8).into());
        let e = read_mask(&small, 32, (96, 64), Fit::Crop)
            .unwrap_err()
            .to_string();
        assert!(e.contains("8x8 but the image is 96x64"), "{e}");
        let mask =
            image::GrayImage::from_fn(96, 64, |x, _| image::Luma([if x < 48 { 255 } else { 0 }]));
        let mask = save(dir.path(), "mask.png", mask.into());
        let m = read_mask(&mask, 32, (96, 64), Fit::Crop).unwrap();
        assert!(m[0] && !m[31], "left half of the square is white");
    }

    /// The mask rule the CLI and the page share: luminance above 127 generates, alpha never
    /// matters, and the mask is fitted like its source (here a 4 px source padded by 2 to 8).
    #[test]
    fn a_mask_is_read_by_its_luminance_whatever_its_alpha() {
        let mut img = image::RgbaImage::new(4, 4);
        for (x, y, p) in img.enumerate_pixels_mut() {
            *p = match (x, y) {
                (0, _) => image::Rgba([255, 255, 255, 0]), // white, transparent: generates
                (1, _) => image::Rgba([0, 0, 0, 255]),     // black, opaque: keeps
                (2, _) => image::Rgba([128, 128, 128, 255]), // just above mid-grey: generates
                _ => image::Rgba([127, 127, 127, 0]),      // mid-grey: keeps
            };
        }
        let img = DynamicImage::ImageRgba8(img);
        let mask = mask_of(&img, 8, (4, 4), Fit::Pad { border: 2 }).unwrap();
        let at = |x: usize, y: usize| mask[y * 8 + x];
        for y in 2..6 {
            assert_eq!(
                [at(2, y), at(3, y), at(4, y), at(5, y)],
                [true, false, true, false]
            );
        }
        assert_eq!(mask.iter().filter(|&&g| g).count(), 8, "the border is kept");
        let err = mask_of(&img, 8, (4, 5), Fit::Pad { border: 2 }).unwrap_err();
        assert_eq!(err, "the mask is 4x4 but the image is 4x5; they must match");
    }

    #[test]
    fn non_images_are_refused_with_a_sentence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.png");
        std::fs::write(&path, b"this is not a picture").unwrap();
        let e = read_picture(&path, 32, Fit::Crop)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("not an image this program reads"), "{e}");
        let e = read_picture(&dir.path().join("missing.png"), 32, Fit::Crop)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("missing.png"), "{e}");
    }
}
