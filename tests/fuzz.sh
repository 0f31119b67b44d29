#!/usr/bin/env bash
# Long fuzzing runs of every decoder that takes outside bytes (src/fuzz.rs): each target
# for SECONDS (default 600), JOBS targets at a time (default: the number of cores).
# Usage: bash tests/fuzz.sh [SECONDS] [JOBS]
# Prints one line per target: inputs run, seed, failures. A failing input is saved in
# $TMPDIR as cas-fuzz-TARGET-SEED.bin; CAS_FUZZ_SEED=SEED replays the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
jobs=${2:-$(nproc)}
cargo test --release --lib --no-run --quiet
targets=(bencode torrent magnet manifest records path_components sync)
run() {
    CAS_FUZZ_SECONDS=$seconds cargo test --release --lib --quiet "fuzz::fuzz_$1" -- --exact --nocapture 2>&1 \
        | grep -E '^fuzz |panicked|allocation' || true
}
export -f run
export seconds
printf '%s\n' "${targets[@]}" | xargs -P "$jobs" -I{} bash -c 'run {}'
