#!/usr/bin/env bash
# Sequential read of one stored file through `cas mount` against its anchors, in one run:
#   cas mount, cold:  page cache dropped first, so the packs come from disk
#   cas mount, packs warm: page cache dropped, then the store's files read once
#   cas mount, again: a second read, from the kernel's cache of the file (KEEP_CACHE)
#   cas mount --direct-io, cold and packs warm: no page cache for the mounted file
#   cat of the source file, warm in the page cache (and cold, for the disk's speed)
#   cat of a synthetic file served from memory by the same adapter (benches/fuse_synthetic.rs),
#   with direct I/O and, second, through the page cache (dropped first) as cas mount reads
# Goal: the mount at >= 1 GB/s and >= 0.5 x the synthetic file with direct I/O.
# Usage: benches/mount.sh [SIZE_MIB] [ROUNDS]   (default 2048 MiB, 3 rounds; medians)
# Needs root, /dev/fuse and bc. Scratch space: $BENCH_DIR or target/bench-mount.
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-2048}
rounds=${2:-3}
work=${BENCH_DIR:-$PWD/target/bench-mount}
if [ "$(id -u)" -ne 0 ] || [ ! -e /dev/fuse ]; then
    echo "mount.sh mounts and drops the page cache: it needs root and /dev/fuse" >&2
    exit 1
fi
cargo build --release --quiet
cas=$PWD/target/release/cas
# The bench binary's name carries a hash: ask cargo where it put it.
synthetic=$(cargo build --release --bench fuse_synthetic --message-format=json-render-diagnostics |
    grep '"reason":"compiler-artifact"' | grep '"name":"fuse_synthetic"' |
    sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
[ -x "$synthetic" ] || { echo "could not find the fuse_synthetic bench binary" >&2; exit 1; }

mnt=$work/mnt mntd=$work/mntd syn=$work/syn synpc=$work/synpc
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    for m in "$mnt" "$mntd" "$syn" "$synpc"; do umount -l "$m" 2>/dev/null || true; done
    rm -rf --one-file-system "$work"
}
for m in "$mnt" "$mntd" "$syn" "$synpc"; do umount -l "$m" 2>/dev/null || true; done  # left by a killed run
rm -rf --one-file-system "$work" && mkdir -p "$work/src" "$mnt" "$mntd" "$syn" "$synpc"
trap cleanup EXIT
echo "making $size_mib MiB of random data in $work" >&2
head -c $((size_mib << 20)) /dev/urandom > "$work/src/disk.img"
"$cas" --store "$work/store" import "$work/src" --name bench >/dev/null
cp -a "$work/store" "$work/store2"   # one process owns a store: the direct-I/O mount gets a copy

# start NAME STDIN CMD...: runs a server in the background, output in $work/NAME.out and
# .err, and waits for its "mounted" line. The FIFOs held open here are not passed on.
start() {
    local name=$1 stdin=$2; shift 2
    "$@" < "$stdin" > "$work/$name.out" 2> "$work/$name.err" 7>&- 8>&- &
    pids+=($!)
    for _ in $(seq 600); do
        grep -q '^mounted' "$work/$name.out" && return 0
        kill -0 "${pids[-1]}" 2>/dev/null || break
        sleep 0.05
    done
    echo "$name did not mount:" >&2; cat "$work/$name.err" >&2
    exit 1
}
start cas /dev/null "$cas" --store "$work/store" mount "$mnt"
# The synthetic servers stop when their stdin closes: a FIFO each, whose writing end
# this script holds (opened read-write, which does not wait for the reader).
mkfifo "$work/syn.in" "$work/synpc.in"
exec 7<> "$work/syn.in" 8<> "$work/synpc.in"
start syn "$work/syn.in" "$synthetic" "$syn" "$size_mib"
start synpc "$work/synpc.in" "$synthetic" "$synpc" "$size_mib" page-cache
start casd /dev/null "$cas" --store "$work/store2" serve --listen 127.0.0.1:0 --mount "$mntd" --direct-io
file=$mnt/refs/bench/disk.img filed=$mntd/refs/bench/disk.img
cmp "$file" "$work/src/disk.img"   # the mount reads back what was imported
cmp "$filed" "$work/src/disk.img"

now() { date +%s.%N; }
elapsed() { echo "$(now) - $1" | bc -l; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }
timed() { local out=$1 t; shift; t=$(now); cat "$@" > /dev/null; elapsed "$t" >> "$work/$out"; }

for r in $(seq "$rounds"); do
    echo "round $r of $rounds" >&2
    drop_caches
    timed cold "$file"
    timed kept "$file"
    drop_caches
    find "$work/store" -type f -exec cat {} + > /dev/null
    timed packs "$file"
    drop_caches
    timed direct_cold "$filed"
    find "$work/store2" -type f -exec cat {} + > /dev/null
    timed direct_packs "$filed"
    drop_caches
    timed source_cold "$work/src/disk.img"
    cat "$work/src/disk.img" > /dev/null
    timed source "$work/src/disk.img"
    timed synthetic "$syn/file.bin"
    drop_caches
    timed synthetic_pc "$synpc/file.bin"
done

# Stop the synthetic servers (stdin closed) for their request counts.
exec 7>&- 8>&-
wait "${pids[1]}" "${pids[2]}" || true
bdi() { cat "/sys/class/bdi/$(mountpoint -d "$1")/read_ahead_kb"; }
ra_cas=$(bdi "$mnt")

bytes=$((size_mib << 20))
src_s=$(median < "$work/source"); syn_s=$(median < "$work/synthetic")
row() {
    local s
    s=$(median < "$work/$2")
    printf '%-44s %8.2f %8.0f %6.2f %10.2f %10.2f\n' "$1" "$s" \
        "$(echo "$bytes / $s / 1000000" | bc -l)" "$(echo "$bytes / $s / 1000000000" | bc -l)" \
        "$(echo "$src_s / $s" | bc -l)" "$(echo "$syn_s / $s" | bc -l)"
}
printf '%-44s %8s %8s %6s %10s %10s\n' "read of $size_mib MiB (median of $rounds)" \
    seconds MB/s GB/s "x source" "x synth."
row "cas mount, cold (caches dropped)" cold
row "cas mount, packs warm, file not cached" packs
row "cas mount, second read (KEEP_CACHE)" kept
row "cas mount --direct-io, cold" direct_cold
row "cas mount --direct-io, packs warm" direct_packs
row "cat of the source file, warm" source
row "cat of the source file, cold (the disk)" source_cold
row "synthetic fuser file, direct I/O" synthetic
row "synthetic fuser file, page cache, cold" synthetic_pc
echo "(x source, x synth.: speed relative to cat of the source and to the synthetic file with direct I/O)"
cold_gbs=$(echo "$bytes / $(median < "$work/cold") / 1000000000" | bc -l)
printf 'goal: cas mount cold >= 1 GB/s (%.2f) and >= 0.5 x synthetic (%.2f)\n' \
    "$cold_gbs" "$(echo "$syn_s / $(median < "$work/cold")" | bc -l)"
printf '      cas mount --direct-io cold: %.2f GB/s, %.2f x synthetic\n' \
    "$(echo "$bytes / $(median < "$work/direct_cold") / 1000000000" | bc -l)" \
    "$(echo "$syn_s / $(median < "$work/direct_cold")" | bc -l)"
echo "cas mount: read_ahead_kb $ra_cas"
cat "$work/syn.err" "$work/synpc.err"
