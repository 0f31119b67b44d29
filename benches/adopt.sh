#!/usr/bin/env bash
# Adopting torrents made elsewhere (`cas add --data`), side by side in one run:
#   time:  cas add of a 2 GiB file's torrent (new data, then data already stored)
#          vs  mktorrent -l 20 -t 2 hashing the same file;
#   space: the same file as three torrents from three makers (mktorrent, transmission-create,
#          libtorrent), and three VM-like images sharing 97% of their blocks:
#          physical bytes (packs on disk) vs logical bytes (what the torrents hold).
# Usage: benches/adopt.sh [SIZE_MIB] [ROUNDS]   (default 2048 MiB, 3 rounds; medians)
# Needs mktorrent, transmission-cli, python3-libtorrent, bc (bash tests/run.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-2048}
rounds=${2:-3}
work=${BENCH_DIR:-$PWD/target/bench-adopt}
cargo build --release --quiet
cas=$PWD/target/release/cas
rm -rf "$work" && mkdir -p "$work/src"
trap 'rm -rf "$work"' EXIT
now() { date +%s.%N; }
elapsed() { echo "$(now) - $1" | bc -l; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
human() { echo "scale=1; $1 / 1048576" | bc -l; }

echo "making $size_mib MiB of random data in $work" >&2
head -c $((size_mib << 20)) /dev/urandom > "$work/src/disk.iso"
cat "$work/src/disk.iso" > /dev/null   # warm the page cache for every contender alike
mktorrent -l 20 -t 2 -o "$work/made.torrent" "$work/src/disk.iso" >/dev/null

for r in $(seq "$rounds"); do
    rm -rf "$work/store" "$work/x.torrent"; sync
    t=$(now); mktorrent -l 20 -t 2 -o "$work/x.torrent" "$work/src/disk.iso" >/dev/null; echo "$(elapsed "$t")" >> "$work/mk"
    t=$(now); "$cas" --store "$work/store" add "$work/made.torrent" --data "$work/src/disk.iso" >/dev/null; echo "$(elapsed "$t")" >> "$work/new"
    sync
    t=$(now); "$cas" --store "$work/store" add "$work/made.torrent" --data "$work/src/disk.iso" >/dev/null; echo "$(elapsed "$t")" >> "$work/again"
done
mk_s=$(median < "$work/mk"); new_s=$(median < "$work/new"); again_s=$(median < "$work/again")
mibs() { echo "scale=0; $size_mib / $1" | bc -l; }
printf '%-40s %8s %9s\n' "contender ($size_mib MiB, median of $rounds)" seconds MiB/s
printf '%-40s %8.2f %9s\n' "mktorrent -l 20 -t 2 (hash only)" "$mk_s" "$(mibs "$mk_s")"
printf '%-40s %8.2f %9s\n' "cas add --data, new data" "$new_s" "$(mibs "$new_s")"
printf '%-40s %8.2f %9s\n' "cas add --data, data already stored" "$again_s" "$(mibs "$again_s")"
printf 'ratio new / mktorrent:     %.2f\n' "$(echo "$new_s / $mk_s" | bc -l)"
printf 'ratio stored / mktorrent:  %.2f\n' "$(echo "$again_s / $mk_s" | bc -l)"

# Space: one file, three makers.
store="$work/three"
mkdir -p "$work/b" "$work/c"
ln "$work/src/disk.iso" "$work/b/netinst.iso"; ln "$work/src/disk.iso" "$work/c/mirror.iso"
mktorrent -l 18 -a http://tracker.invalid/announce -o "$work/t1.torrent" "$work/src/disk.iso" >/dev/null
transmission-create -p -s 256 -t http://other.invalid/announce -o "$work/t2.torrent" "$work/b/netinst.iso" >/dev/null
/usr/bin/python3 tests/it/peers/lt_make.py "$work/c/mirror.iso" "$work/t3.torrent" 262144 http://third.invalid/announce 0
"$cas" --store "$store" add "$work/t1.torrent" --data "$work/src/disk.iso" >/dev/null
"$cas" --store "$store" add "$work/t2.torrent" --data "$work/b/netinst.iso" >/dev/null
"$cas" --store "$store" add "$work/t3.torrent" --data "$work/c/mirror.iso" >/dev/null
phys=$("$cas" --store "$store" stats --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["physical_bytes"])')
logical=$((3 * (size_mib << 20)))
printf 'one file in 3 torrents:  logical %s MiB, physical %s MiB (%.3f x one copy)\n' \
    "$(human $logical)" "$(human "$phys")" "$(echo "$phys / ($size_mib * 1048576)" | bc -l)"
rm -rf "$store" "$work/b" "$work/c"

# Space: three VM-like images of SIZE_MIB, 1 MiB blocks, one in four never written,
# two derived by changing 3% of the blocks.
store="$work/vm"
blocks=$size_mib
for i in 0 1 2; do
    truncate -s "${size_mib}M" "$work/vm$i.raw"
done
python3 - "$work" "$blocks" <<'PY'
import os, random, sys
work, blocks = sys.argv[1], int(sys.argv[2])
base = [b for b in range(blocks) if b % 4 != 3]
for i in range(3):
    with open(f"{work}/vm{i}.raw", "r+b") as f:
        rnd = random.Random(1)
        for b in base:
            f.seek(b << 20); f.write(rnd.randbytes(1 << 20))
        if i:
            rnd = random.Random(100 + i)
            for _ in range(blocks * 3 // 100):
                f.seek(rnd.randrange(blocks) << 20); f.write(rnd.randbytes(1 << 20))
PY
for i in 0 1 2; do
    mktorrent -l 20 -t 2 -o "$work/vm$i.torrent" "$work/vm$i.raw" >/dev/null
    "$cas" --store "$store" add "$work/vm$i.torrent" --data "$work/vm$i.raw" >/dev/null
done
phys=$("$cas" --store "$store" stats --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["physical_bytes"])')
alloc=$(( $(stat -c %b "$work/vm0.raw") * 512 ))
printf '3 VM images (97%% shared): logical %s MiB, physical %s MiB (%.3f x one image, %.3f x its allocated %s MiB)\n' \
    "$(human $((3 * (size_mib << 20))))" "$(human "$phys")" \
    "$(echo "$phys / ($size_mib * 1048576)" | bc -l)" "$(echo "$phys / $alloc" | bc -l)" "$(human $alloc)"
