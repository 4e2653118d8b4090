//! What each fuzz target does with its input, shared by the targets (`fuzz_targets/`) and by
//! `tests/fuzz_corpus.rs`, which replays every input kept in `tests/fuzz-regressions/`. Each
//! function must return (values or an error) for any bytes: a panic, an abort or a blown
//! memory limit is a finding.
//!
//! The memory limit is per input and follows from its length ([`bound`]): every target and the
//! replay install [`Counting`] as the global allocator, and [`run_bounded`] fails an input whose
//! peak of live heap bytes exceeds what its length justifies. libFuzzer's own limits cannot say
//! that: `-malloc_limit_mb` sees one allocation at a time and `-rss_limit_mb` the whole
//! process, so a loader that keeps a hundred times its input in many small pieces passes both.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Cursor, Write};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

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
pub fn pth_container(data: &[u8]) -> usize {
    if let Ok(file) = PthFile::from_bytes(data.to_vec()) {
        read_all(&file);
    }
    0
}

/// The pickle machine and the tensor views it builds: `pickle` becomes `data.pkl` of an
/// otherwise valid checkpoint (the container's checksums are right, so every mutation reaches
/// the pickle) with two small storages, '0' and '1'.
pub fn pickle(pickle: &[u8]) -> usize {
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
    0
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
pub fn config_json(data: &[u8]) -> usize {
    let Ok(text) = std::str::from_utf8(data) else {
        return 0;
    };
    if let Ok(config) = ModelConfig::from_json(text, "config.json") {
        let image = ImageMemory::of(&config);
        let _ = image.largest_batch(1 << 30, false, 4 << 30, 16);
        let _ = config.seq_len();
    }
    // The class names are in the text itself.
    0
}

/// `manifest.json` of a sharded model: parsed and checked, then asked its largest tensor.
pub fn manifest_json(data: &[u8]) -> usize {
    let Ok(text) = std::str::from_utf8(data) else {
        return 0;
    };
    if let Ok(manifest) = Manifest::from_json(text) {
        let _ = manifest.largest_device_tensor(true);
        let _ = manifest.largest_device_tensor(false);
    }
    0
}

/// A safetensors file through our source (f32, f16, int8 codes with their scales): every
/// tensor the header names taken at the shape the header gives, as the loader does.
pub fn safetensors_source(data: &[u8]) -> usize {
    let Ok(parsed) = safetensors::SafeTensors::deserialize(data) else {
        return 0;
    };
    let shapes: Vec<(String, Vec<usize>)> = parsed
        .tensors()
        .into_iter()
        .map(|(name, view)| (name, view.shape().to_vec()))
        .collect();
    let Ok(mut source) = SafetensorsSource::new(data, "fuzz.safetensors") else {
        return 0;
    };
    for (name, shape) in &shapes {
        // The loader asks for int8 codes only for matrices (Linear weights).
        if shape.len() == 2 {
            let _ = source.take_int8(name, shape);
        }
        let _ = source.take(name, shape);
    }
    let _ = source.unused();
    0
}

/// A picture or mask upload: decoded within the budget its length justifies, then fitted to a
/// model's side by both rules (as an image and as a mask), and a result given back in its
/// geometry, as `var inpaint` does.
pub fn image_mask(data: &[u8]) -> usize {
    let Ok(img) = picture::decode_bytes(data, picture::alloc_budget(data.len() as u64)) else {
        return 0;
    };
    for rule in [Fit::Crop, Fit::Pad { border: 2 }] {
        let rgb = picture::fit_rgb(&img, 32, rule);
        assert_eq!(rgb.len(), 32 * 32 * 3);
        let back = picture::unfit_rgb(&rgb, 32, rule, &img.to_rgb8());
        assert_eq!(back.dimensions(), (img.width(), img.height()));
    }
    0
}

/// Config inference from the tensor shapes of a pair of checkpoints (`var convert` and the
/// page's converter do it before reading any weight). The input is text, so that mutations
/// stay meaningful: a line `patch_nums 1,2,3`, then lines `vae KEY D0,D1,…` and `var KEY …`.
pub fn config_infer(data: &[u8]) -> usize {
    let Ok(text) = std::str::from_utf8(data) else {
        return 0;
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
    let Ok(config) = config else {
        return 0;
    };
    let _ = ImageMemory::of(&config).largest_batch(1 << 30, false, 4 << 30, 16);
    let _ = config.seq_len();
    // What the validated configuration needs beyond the text: a name for each class
    // (ImageNet's for 1,000 classes, else `class N`), which the class embedding's row count
    // sets (up to config::limits::MAX_CLASSES).
    config.var.num_classes * CLASS_NAME_BYTES
}

/// The most one default class name takes: its `String` and its text (ImageNet's longest
/// names are under 140 bytes).
const CLASS_NAME_BYTES: usize = 160;

/// The system allocator, counting live bytes and their peak.
pub struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let live = LIVE.fetch_add(bytes, Relaxed) + bytes;
    PEAK.fetch_max(live, Relaxed);
}

// SAFETY: every call is forwarded to `System` unchanged; only the counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            // Counted as the new block arriving before the old one leaves, as a moving
            // realloc holds both.
            grew(new_size);
            LIVE.fetch_sub(layout.size(), Relaxed);
        }
        new
    }
}

const MIB: usize = 1 << 20;

/// The most live heap one input of `len` bytes may need in `target`, beyond what was live
/// before it. Each is the loader's documented bound (`docs/bad-input.md`) with room for the
/// harness's own copies:
/// - `.pth`: 64 bytes per input byte (the zip directory, the pickle's arena at 32 bytes an
///   opcode plus its stack and memo, the views it may build at 16 per pickle byte, one tensor's
///   span and its values at 8 per stored byte) plus 129 MiB, the largest broadcast view read as
///   i64 (2^24 elements) and the floors;
/// - JSON (`config.json`, `manifest.json`) and the shape list: 32 per byte plus 1 MiB, and
///   for the shape list the class names of the config it gives (the target returns those);
/// - safetensors: 16 per byte (int8 codes become f32) plus 1 MiB;
/// - pictures: three canvases of `picture::alloc_budget` (the decoded image, its RGB copy and
///   the result in the source's size) plus 1 MiB.
pub fn bound(target: &str, len: usize) -> usize {
    let per_byte = |k: usize, floor: usize| len.saturating_mul(k).saturating_add(floor);
    match target {
        "pth_container" | "pickle" => per_byte(64, 129 * MIB),
        "config_json" | "manifest_json" | "config_infer" => per_byte(32, MIB),
        "safetensors_source" => per_byte(16, MIB),
        "image_mask" => {
            let canvas = picture::alloc_budget(len as u64) as usize;
            canvas.saturating_mul(3).saturating_add(MIB)
        }
        _ => panic!("no memory bound for target {target}"),
    }
}

/// Runs `run` on `data` and returns the peak of live heap bytes it added, and what `run`
/// says its validated configuration justifies. Meaningful only where [`Counting`] is the
/// global allocator and nothing else allocates meanwhile.
pub fn peak_of(run: Target, data: &[u8]) -> (usize, usize) {
    let before = LIVE.load(Relaxed);
    PEAK.store(before, Relaxed);
    let justified = run(data);
    (PEAK.load(Relaxed).saturating_sub(before), justified)
}

/// Runs target `name` on `data`, panicking (a finding) when its peak exceeds [`bound`];
/// returns the peak it checked.
pub fn run_bounded(name: &str, data: &[u8]) -> usize {
    let (_, run) = TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no target {name}"));
    let (peak, justified) = peak_of(*run, data);
    let limit = bound(name, data.len()).saturating_add(justified);
    assert!(
        peak <= limit,
        "{name}: an input of {} bytes peaked at {peak} live heap bytes, over its bound of {limit}",
        data.len()
    );
    peak
}

/// What a target does with one input; it returns the heap bytes the validated configuration
/// it read needs beyond what [`bound`] allows for the input's length (0 for most).
pub type Target = fn(&[u8]) -> usize;

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
