#!/usr/bin/env bash
# A fuzz campaign: every target in fuzz/ (cargo-fuzz, libFuzzer, the nightly toolchain) for
# SECONDS each (default 60), one after another, under libFuzzer's memory limits, seeded from
# tests/fuzz-regressions/ (the replayed corpus) on the first run and from its own growing
# corpus (fuzz/corpus/, not committed) after. Prints per target the executions, coverage,
# corpus size, CPU seconds (user + system, what the hour per target counts) and findings;
# every input is also held to its memory bound (fuzz/harness.rs, `bound`). A finding is
# left in fuzz/artifacts/<target>/ and the script
# exits 1. To keep one as a regression test, fix it and copy it into
# tests/fuzz-regressions/<target>/ (tests/fuzz_corpus.rs replays that folder in cargo test).
#
#   scripts/fuzz.sh [SECONDS] [TARGET ...]
set -euo pipefail
cd "$(dirname "$0")/.."
# The targets build in fuzz/target under their own toolchain and flags: in the project's
# shared target directory they would rebuild burn and hold its lock for the length of it.
unset CARGO_TARGET_DIR
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(pth_container pickle config_json config_infer manifest_json safetensors_source image_mask)

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal

# No sanitizer: the loaders are safe Rust, so what is sought is panics (index, overflow with
# the debug assertions on), aborts and allocations past the limits, and an uninstrumented
# build runs several times the executions.
(cd fuzz && cargo +nightly fuzz build -O -s none -a)

found=0
for t in "${targets[@]}"; do
  corpus=fuzz/corpus/$t
  mkdir -p "$corpus" "fuzz/artifacts/$t"
  [ -n "$(ls -A "$corpus")" ] || cp tests/fuzz-regressions/"$t"/* "$corpus"/
  log=$(mktemp)
  cpu=$(mktemp)
  # rss 2 GiB and one allocation at most 512 MiB: a loader may not allocate more than
  # a small multiple of what its input justifies, and these inputs are at most 1 MiB.
  # Sources changed since the first build are rebuilt here, outside the timed run, so the CPU
  # seconds are the fuzzer's alone.
  (cd fuzz && cargo +nightly fuzz build -O -s none -a "$t") >"$log" 2>&1
  timer=()
  [ -x /usr/bin/time ] && timer=(/usr/bin/time -o "$cpu" -f '%U %S')
  (cd fuzz && "${timer[@]}" cargo +nightly fuzz run -O -s none -a "$t" "../$corpus" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=512 -max_len=1048576 \
    -timeout=10 -print_final_stats=1 -artifact_prefix="artifacts/$t/") >"$log" 2>&1 || true
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo '?')
  ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo '?')
  crashes=$(find "fuzz/artifacts/$t" -type f | wc -l)
  cpu_s=$(awk 'END { if (NF == 2) printf "%.0f", $1 + $2; else print "?" }' "$cpu")
  echo "$t: ${seconds} s, ${cpu_s} CPU s, $execs executions, coverage $cov edges ($ft features), corpus $(ls "$corpus" | wc -l) inputs, findings $crashes"
  if [ "$crashes" -gt 0 ]; then
    found=1
    grep -m1 -E 'panicked|ERROR: libFuzzer|SUMMARY' "$log" | sed 's/^/  /' || true
  fi
  rm -f "$log" "$cpu"
done
exit $found
