#!/usr/bin/env bash
# Import throughput of cas against its anchors, side by side in one run:
#   new data:      cas import  vs  dd conv=fsync of the same bytes   (goal: <= 1.25 x)
#   already held:  cas import  vs  mktorrent -l 20 -t 2              (goal: <= 1.5 x)
#   sparse:        cas import of a 10 GiB file holding 10 MiB of data (holes not read;
#                  the file's BLAKE3 still covers its zeros)
# Usage: benches/import.sh [SIZE_MIB] [ROUNDS]   (default 2048 MiB, 3 rounds; medians)
# Needs mktorrent (bash tests/run.sh installs it). Scratch space: $BENCH_DIR or target/bench.
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-2048}
rounds=${2:-3}
work=${BENCH_DIR:-$PWD/target/bench}
cargo build --release --quiet
cas=${CARGO_TARGET_DIR:-$PWD/target}/release/cas
rm -rf "$work" && mkdir -p "$work/src"
trap 'rm -rf "$work"' EXIT
echo "making $size_mib MiB of random data in $work" >&2
head -c $((size_mib << 20)) /dev/urandom > "$work/src/disk.img"
cat "$work/src/disk.img" > /dev/null   # warm the page cache for every contender alike

now() { date +%s.%N; }
elapsed() { echo "$(now) - $1" | bc -l; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

for r in $(seq "$rounds"); do
    rm -rf "$work/store" "$work/dd.out" "$work/x.torrent"
    sync
    t=$(now); dd if="$work/src/disk.img" of="$work/dd.out" bs=1M conv=fsync status=none; echo "$(elapsed "$t")" >> "$work/dd"
    rm -f "$work/dd.out"; sync
    t=$(now); "$cas" --store "$work/store" import "$work/src" --name bench >/dev/null; echo "$(elapsed "$t")" >> "$work/new"
    sync
    t=$(now); "$cas" --store "$work/store" import "$work/src" --name bench >/dev/null; echo "$(elapsed "$t")" >> "$work/again"
    t=$(now); mktorrent -l 20 -t 2 -o "$work/x.torrent" "$work/src/disk.img" >/dev/null; echo "$(elapsed "$t")" >> "$work/mktorrent"
done

dd_s=$(median < "$work/dd"); new_s=$(median < "$work/new")
again_s=$(median < "$work/again"); mk_s=$(median < "$work/mktorrent")
mibs() { echo "scale=0; $size_mib / $1" | bc -l; }
printf '%-34s %8s %9s\n' "contender ($size_mib MiB, median of $rounds)" seconds MiB/s
printf '%-34s %8.2f %9s\n' "dd bs=1M conv=fsync" "$dd_s" "$(mibs "$dd_s")"
printf '%-34s %8.2f %9s\n' "cas import, new data" "$new_s" "$(mibs "$new_s")"
printf '%-34s %8.2f %9s\n' "mktorrent -l 20 -t 2" "$mk_s" "$(mibs "$mk_s")"
printf '%-34s %8.2f %9s\n' "cas import, data already stored" "$again_s" "$(mibs "$again_s")"
printf 'ratio new data / dd:            %.2f (goal <= 1.25)\n' "$(echo "$new_s / $dd_s" | bc -l)"
printf 'ratio re-import / mktorrent:    %.2f (goal <= 1.5)\n' "$(echo "$again_s / $mk_s" | bc -l)"

# A sparse file: 10 GiB, 10 MiB of data in its middle. Import reads only the data
# (SEEK_DATA/SEEK_HOLE); what is left is the whole-file BLAKE3 over the zeros.
rm -rf "$work/sparse" "$work/sparse-store" && mkdir -p "$work/sparse"
truncate -s 10G "$work/sparse/disk.img"
head -c $((10 << 20)) /dev/urandom | dd of="$work/sparse/disk.img" bs=1M seek=5000 conv=notrunc status=none
for r in $(seq "$rounds"); do
    rm -rf "$work/sparse-store"
    t=$(now); "$cas" --store "$work/sparse-store" import "$work/sparse" --name sparse >/dev/null; echo "$(elapsed "$t")" >> "$work/sparse-t"
done
printf '%-34s %8.2f %9s\n' "cas import, 10 GiB sparse (10 MiB)" "$(median < "$work/sparse-t")" "-"
