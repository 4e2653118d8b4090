//! Replays every input kept in `tests/fuzz-regressions/<target>/` (what a fuzz campaign,
//! `scripts/fuzz.sh`, found and what was fixed, plus small seeds) through the same code the
//! fuzz targets run (`fuzz/harness.rs`), so a fixed finding stays fixed in `cargo test`.
#![cfg(not(target_arch = "wasm32"))]

#[path = "../fuzz/harness.rs"]
mod harness;

use std::path::Path;

#[test]
fn every_kept_fuzz_input_is_handled_without_a_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions");
    let mut replayed = 0;
    for (name, run) in harness::TARGETS {
        let dir = root.join(name);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| run(&bytes));
            assert!(outcome.is_ok(), "{name}: {} panics", path.display());
            replayed += 1;
        }
    }
    assert!(replayed > 0, "no inputs under {}", root.display());
}
