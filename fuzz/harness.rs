//! What each fuzz target does with its input, shared by the targets (`fuzz_targets/`) and by
//! `tests/fuzz_corpus.rs`, which replays every input kept in `tests/fuzz-regressions/`. Each
//! function must return (values or an error) for any bytes: a panic, an abort or a blown
//! memory limit is a finding.

use std::io::{Cursor, Write};

use std::collections::HashMap;

use var_web::ModelConfig;
use var_web::config::Fit;
use var_web::convert::infer_config;
use var_web::picture;
use var_web::weights::TensorSource;
use var_web::weights::pth::PthFile;
use var_web::weights::safetensors::SafetensorsSource;
use var_web::weights::shards::{ImageMemory, Manifest};
use zip::write::SimpleFileOptions;

/// A whole `.pth` file (zip container + pickle + storages): opened, every tensor read.
pub fn pth_container(data: &[u8]) {
    if let Ok(file) = PthFile::from_bytes(data.to_vec()) {
        read_all(&file);
    }
}

/// The pickle machine and the tensor views it builds: `pickle` becomes `data.pkl` of an
/// otherwise valid checkpoint (the container's checksums are right, so every mutation reaches
/// the pickle) with two small storages, '0' and '1'.
pub fn pickle(pickle: &[u8]) {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let stored = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in [
        ("archive/data.pkl", pickle),
        ("archive/data/0", &[7u8; 96][..]),
        ("archive/data/1", &[1u8; 8][..]),
    ] {
        w.start_file(name, stored).expect("an in-memory zip");
        w.write_all(data).expect("an in-memory zip");
    }
    let bytes = w.finish().expect("an in-memory zip").into_inner();
    if let Ok(file) = PthFile::from_bytes(bytes) {
        read_all(&file);
    }
}

fn read_all(file: &PthFile) {
    let keys: Vec<String> = file.keys().map(str::to_string).collect();
    for key in keys {
        let _ = file.read_f32(&key);
        let _ = file.read_i64(&key);
    }
}

/// `config.json`: parsed and validated, then used to size a model's memory (the first thing
/// the page does with a config).
pub fn config_json(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = ModelConfig::from_json(text, "config.json") {
        let image = ImageMemory::of(&config);
        let _ = image.largest_batch(1 << 30, false, 4 << 30, 16);
        let _ = config.seq_len();
    }
}

/// `manifest.json` of a sharded model: parsed and checked, then asked its largest tensor.
pub fn manifest_json(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(manifest) = Manifest::from_json(text) {
        let _ = manifest.largest_device_tensor(true);
        let _ = manifest.largest_device_tensor(false);
    }
}

/// A safetensors file through our source (f32, f16, int8 codes with their scales): every
/// tensor the header names taken at the shape the header gives, as the loader does.
pub fn safetensors_source(data: &[u8]) {
    let Ok(parsed) = safetensors::SafeTensors::deserialize(data) else {
        return;
    };
    let shapes: Vec<(String, Vec<usize>)> = parsed
        .tensors()
        .into_iter()
        .map(|(name, view)| (name, view.shape().to_vec()))
        .collect();
    let Ok(mut source) = SafetensorsSource::new(data, "fuzz.safetensors") else {
        return;
    };
    for (name, shape) in &shapes {
        // The loader asks for int8 codes only for matrices (Linear weights).
        if shape.len() == 2 {
            let _ = source.take_int8(name, shape);
        }
        let _ = source.take(name, shape);
    }
    let _ = source.unused();
}

/// A picture or mask upload: decoded within the budget its length justifies, then fitted to a
/// model's side by both rules (as an image and as a mask), and a result given back in its
/// geometry, as `var inpaint` does.
pub fn image_mask(data: &[u8]) {
    let Ok(img) = picture::decode_bytes(data, picture::alloc_budget(data.len() as u64)) else {
        return;
    };
    for rule in [Fit::Crop, Fit::Pad { border: 2 }] {
        let rgb = picture::fit_rgb(&img, 32, rule);
        assert_eq!(rgb.len(), 32 * 32 * 3);
        let back = picture::unfit_rgb(&rgb, 32, rule, &img.to_rgb8());
        assert_eq!(back.dimensions(), (img.width(), img.height()));
    }
}

/// Config inference from the tensor shapes of a pair of checkpoints (`var convert` and the
/// page's converter do it before reading any weight). The input is text, so that mutations
/// stay meaningful: a line `patch_nums 1,2,3`, then lines `vae KEY D0,D1,…` and `var KEY …`.
pub fn config_infer(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let dims = |s: &str| -> Option<Vec<usize>> {
        if s.is_empty() {
            return Some(vec![]);
        }
        s.split(',').map(|d| d.trim().parse().ok()).collect()
    };
    let (mut vae, mut var, mut patch_nums) = (HashMap::new(), HashMap::new(), vec![]);
    for line in text.lines() {
        let mut parts = line.splitn(3, ' ');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("patch_nums"), Some(p), None) => patch_nums = dims(p).unwrap_or_default(),
            (Some("vae"), Some(key), Some(shape)) => {
                vae.insert(key.to_string(), dims(shape).unwrap_or_default());
            }
            (Some("var"), Some(key), Some(shape)) => {
                var.insert(key.to_string(), dims(shape).unwrap_or_default());
            }
            _ => {}
        }
    }
    let config = infer_config(
        &|k| vae.get(k).cloned(),
        &|k| var.get(k).cloned(),
        &patch_nums,
        "fuzz",
    );
    if let Ok(config) = config {
        let _ = ImageMemory::of(&config).largest_batch(1 << 30, false, 4 << 30, 16);
        let _ = config.seq_len();
    }
}

/// What a target does with one input.
pub type Target = fn(&[u8]);

/// The targets by name, as `scripts/fuzz.sh` and the corpus replay know them.
pub const TARGETS: [(&str, Target); 7] = [
    ("pth_container", pth_container),
    ("pickle", pickle),
    ("config_json", config_json),
    ("manifest_json", manifest_json),
    ("safetensors_source", safetensors_source),
    ("image_mask", image_mask),
    ("config_infer", config_infer),
];
