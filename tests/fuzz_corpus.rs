//! Replays every input kept in `tests/fuzz-regressions/<target>/` (what a fuzz campaign,
//! `scripts/fuzz.sh`, found and what was fixed, plus small seeds) through the same code the
//! fuzz targets run (`fuzz/harness.rs`), under the same per-input memory bound, so a fixed
//! finding stays fixed in `cargo test`.
#![cfg(not(target_arch = "wasm32"))]

#[path = "../fuzz/harness.rs"]
mod harness;

use std::path::Path;

// Counts heap bytes as the fuzz targets do. The counter is process-wide, so the tests here
// take `ONE_AT_A_TIME` and nothing else allocates while an input runs.
#[global_allocator]
static HEAP: harness::Counting = harness::Counting;
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn every_kept_fuzz_input_is_handled_without_a_panic_within_its_memory_bound() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions");
    let (mut replayed, mut largest_peak) = (0, 0);
    for (name, _) in harness::TARGETS {
        let dir = root.join(name);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| harness::run_bounded(name, &bytes));
            let Ok(peak) = outcome else {
                panic!("{name}: {} fails", path.display());
            };
            largest_peak = largest_peak.max(peak);
            replayed += 1;
        }
    }
    assert!(replayed > 0, "no inputs under {}", root.display());
    // The counter is live: a seed that parses allocates something.
    assert!(largest_peak > 0, "the counting allocator saw no allocation");
}

/// The bound bites: a loader that kept 100 copies of its input would fail it.
#[test]
fn a_hundred_copies_of_the_input_exceed_the_bound() {
    fn hoard(data: &[u8]) -> usize {
        let copies: Vec<Vec<u8>> = (0..100).map(|_| data.to_vec()).collect();
        std::hint::black_box(copies);
        0
    }
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let input = vec![7u8; 1 << 20];
    let (peak, _) = harness::peak_of(hoard, &input);
    assert!(peak >= 100 << 20, "peak {peak}");
    assert!(peak > harness::bound("config_json", input.len()));
}
