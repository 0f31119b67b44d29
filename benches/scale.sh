#!/usr/bin/env bash
# cas at the scale of real trees: N small files (4-5 KiB, 100 a folder) and a seedbox of
# adopted torrents, each figure beside its anchor, and its growth from N to 10 x N.
#   import          cas import of the tree            vs  mktorrent -l 20 -t 2 (goal <= 3 x)
#   re-import       the unchanged tree again                                   (goal <= 1 s)
#   serve           exec to the "seeding" line                                 (goal <= 2 s, flat)
#   RSS, idle CPU   of cas serve, 5 s after its line, then over 10 s           (goal 200 MB, 1 %)
#   first byte      a libtorrent client given one file's magnet and cas's
#                   address: first payload byte, whole file checked            (goal <= 2 s)
#   ls, stats       cas ls of the tree, cas stats     vs  find on the source   (goal <= 2 x)
#   seedbox         SEEDBOX files, each in a torrent of its own made by mktorrent and
#                   adopted with cas add --data; cas serve started as above    (goal <= 2 s)
# Usage: benches/scale.sh [N...]   (default: 1000 10000 100000; SEEDBOX=1000, 0 to skip)
# Needs mktorrent and python3-libtorrent (bash tests/run.sh installs them).
# Scratch space: $BENCH_DIR or target/bench-scale.
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("$@")
((${#sizes[@]})) || sizes=(1000 10000 100000)
seedbox=${SEEDBOX:-1000}
work=${BENCH_DIR:-$PWD/target/bench-scale}
py=/usr/bin/python3
cargo build --release --quiet
cas=${CARGO_TARGET_DIR:-$PWD/target}/release/cas

serve_pid=
cleanup() {
    [[ -z $serve_pid ]] || { kill "$serve_pid" 2>/dev/null; wait "$serve_pid" 2>/dev/null; } || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
rm -rf "$work" && mkdir -p "$work"

now() { date +%s.%N; }
elapsed() { echo "$(now) - $1" | bc -l; }
die() { echo "scale.sh: $*" >&2; exit 1; }
free_port() { "$py" -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
# timed VAR CMD...: runs CMD (output dropped), sets VAR to its seconds.
timed() { local var=$1 t; shift; t=$(now); "$@" >/dev/null; printf -v "$var" '%.3f' "$(elapsed "$t")"; }
ratio() { echo "scale=2; $1 / $2" | bc -l; }

# make_tree DIR N: N files of 4-5 KiB of random bytes, 100 a folder.
make_tree() {
    "$py" - "$1" "$2" <<'EOF'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
r = random.Random(n)
for i in range(n):
    d = os.path.join(root, "d%05d" % (i // 100))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%06d.bin" % i), "wb") as f:
        f.write(r.randbytes(4096 + r.randrange(1024)))
EOF
}

# start_serve STORE: cas serve on loopback until its "seeding" line; sets serve_pid,
# serve_s, port, line.
start_serve() {
    local out=$work/serve.out t end
    t=$(now)
    "$cas" --store "$1" serve --listen 127.0.0.1:0 > "$out" 2> "$work/serve.err" &
    serve_pid=$!
    end=$(($(date +%s) + 900))
    until grep -qs '^seeding' "$out"; do
        kill -0 "$serve_pid" 2>/dev/null || die "cas serve exited: $(tail -5 "$work/serve.err")"
        (($(date +%s) < end)) || die "no 'seeding' line from cas serve after 900 s"
        sleep 0.005
    done
    printf -v serve_s '%.3f' "$(elapsed "$t")"
    line=$(grep -m1 '^seeding' "$out")
    port=${line##*:}
}
stop_serve() { kill -TERM "$serve_pid"; wait "$serve_pid" || true; serve_pid=; }
# cpu_ticks PID: user + system clock ticks of a process.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# serve_figures: RSS (MB) 5 s after the line, then CPU % over 10 s; sets rss_mb, idle_pct.
serve_figures() {
    sleep 5
    rss_mb=$(awk '/VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$serve_pid/status")
    local a b hz
    hz=$(getconf CLK_TCK)
    a=$(cpu_ticks "$serve_pid"); sleep 10; b=$(cpu_ticks "$serve_pid")
    idle_pct=$(echo "scale=1; ($b - $a) * 100 / $hz / 10" | bc -l)
}

declare -A f
for n in "${sizes[@]}"; do
    tree=$work/t$n store=$work/s$n
    echo "making $n files in $tree" >&2
    make_tree "$tree" "$n"
    sync
    # Settled, as a real tree's files are: the stat cache trusts only files whose
    # status changed more than a second before the import that saw them.
    sleep 2
    timed "f[import,$n]" "$cas" --store "$store" import "$tree" --name t
    timed "f[mktorrent,$n]" mktorrent -l 20 -t 2 -o "$work/t.torrent" "$tree"
    rm -f "$work/t.torrent"
    timed "f[reimport,$n]" "$cas" --store "$store" import "$tree" --name t
    timed "f[find,$n]" find "$tree"
    timed "f[ls,$n]" "$cas" --store "$store" ls t
    timed "f[stats,$n]" "$cas" --store "$store" stats
    start_serve "$store"
    f[serve,$n]=$serve_s
    echo "  $line" >&2
    serve_figures
    f[rss,$n]=$rss_mb f[idle,$n]=$idle_pct
    mid=d$(printf %05d $((n / 2 / 100)))/f$(printf %06d $((n / 2))).bin
    magnet=$("$cas" --store "$store" magnet "t:$mid")
    rm -rf "$work/lt"
    "$py" benches/lt_first_byte.py "$magnet" "$work/lt" "$(free_port)" 127.0.0.1 "$port" \
        "$tree/$mid" 60 > "$work/lt.json"
    grep -q '"same": true' "$work/lt.json" || die "libtorrent did not get $mid right: $(cat "$work/lt.json")"
    f[first,$n]=$("$py" -c 'import json,sys; print("%.3f" % json.load(open(sys.argv[1]))["first_byte_s"])' "$work/lt.json")
    f[done,$n]=$("$py" -c 'import json,sys; print("%.3f" % json.load(open(sys.argv[1]))["done_s"])' "$work/lt.json")
    stop_serve
    echo "  import ${f[import,$n]} s (mktorrent ${f[mktorrent,$n]}), re-import ${f[reimport,$n]} s," \
        "serve ${f[serve,$n]} s, ${f[rss,$n]} MB, ${f[idle,$n]} % idle, first byte ${f[first,$n]} s" >&2
done

if ((seedbox > 0)); then
    echo "making $seedbox torrents with mktorrent and adopting them" >&2
    box=$work/box store=$work/sbox
    make_tree "$box/data" "$seedbox"
    mkdir -p "$box/torrents"
    for d in "$box"/data/*/; do
        for file in "$d"*.bin; do
            mktorrent -l 16 -o "$box/torrents/$(basename "$file").torrent" "$file" >/dev/null
        done
    done
    t=$(now)
    for d in "$box"/data/*/; do
        for file in "$d"*.bin; do
            "$cas" --store "$store" add "$box/torrents/$(basename "$file").torrent" --data "$file" >/dev/null
        done
    done
    printf -v adopt_s '%.3f' "$(elapsed "$t")"
    start_serve "$store"
    echo "  $line" >&2
    serve_figures
    box_serve=$serve_s box_rss=$rss_mb box_idle=$idle_pct
    stop_serve
fi

printf '\n%-44s' "figure (N small files)"
for n in "${sizes[@]}"; do printf ' %12s' "$n"; done
printf '\n'
row() {
    local label=$1 key=$2
    printf '%-44s' "$label"
    for n in "${sizes[@]}"; do printf ' %12s' "${f[$key,$n]}"; done
    printf '\n'
}
row "cas import, s" import
row "mktorrent -l 20 -t 2, s" mktorrent
printf '%-44s' "  import / mktorrent (goal <= 3)"
for n in "${sizes[@]}"; do printf ' %12s' "$(ratio "${f[import,$n]}" "${f[mktorrent,$n]}")"; done
printf '\n'
row "re-import unchanged, s (goal <= 1)" reimport
row "cas serve to 'seeding', s (goal <= 2)" serve
row "cas serve RSS, MB (goal <= 200)" rss
row "cas serve idle CPU, % (goal <= 1)" idle
row "libtorrent first byte, s (goal <= 2)" first
row "libtorrent whole file, s" done
row "find on the source, s" find
row "cas ls, s" ls
row "cas stats, s" stats
printf '%-44s' "  ls / find (goal <= 2)"
for n in "${sizes[@]}"; do printf ' %12s' "$(ratio "${f[ls,$n]}" "${f[find,$n]}")"; done
printf '\n'
for ((i = 1; i < ${#sizes[@]}; i++)); do
    a=${sizes[i - 1]} b=${sizes[i]}
    ((b == 10 * a)) || continue
    printf 'growth %s -> %s: import %s x, serve %s x (goal <= 1.5 over 1,000 -> 100,000), RSS %s x\n' \
        "$a" "$b" "$(ratio "${f[import,$b]}" "${f[import,$a]}")" \
        "$(ratio "${f[serve,$b]}" "${f[serve,$a]}")" "$(ratio "${f[rss,$b]}" "${f[rss,$a]}")"
done
if ((seedbox > 0)); then
    printf '\nseedbox, %s adopted torrents: cas add --data of all %s s; cas serve to "seeding" %s s (goal <= 2), RSS %s MB, idle CPU %s %%\n' \
        "$seedbox" "$adopt_s" "$box_serve" "$box_rss" "$box_idle"
fi
