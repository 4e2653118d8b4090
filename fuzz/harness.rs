//! What each fuzz target does with its input, shared by the targets (`fuzz_targets/`) and by
//! `tests/fuzz_corpus.rs`, which replays every input kept in `tests/fuzz-regressions/`. Each
//! function must return (values or an error) for any bytes: a panic, an abort or a blown
//! memory limit is a finding.

use std::io::{Cursor, Write};

use var_web::ModelConfig;
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

/// What a target does with one input.
pub type Target = fn(&[u8]);

/// The targets by name, as `scripts/fuzz.sh` and the corpus replay know them.
pub const TARGETS: [(&str, Target); 5] = [
    ("pth_container", pth_container),
    ("pickle", pickle),
    ("config_json", config_json),
    ("manifest_json", manifest_json),
    ("safetensors_source", safetensors_source),
];
