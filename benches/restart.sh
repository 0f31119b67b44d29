#!/usr/bin/env bash
# How fast `cas serve` is back after a restart, with a large store (goal: seeding within 5 s).
#   SIZE_GIB files of 1 GiB of random bytes are imported into a store; `cas serve` is
#   started until it prints its "seeding N torrents on ADDR" line and stopped (SIGTERM);
#   then started again, timed from exec to that line. A libtorrent downloader
#   (tests/it/peers/lt_download.py, told the address) then fetches the last file from the
#   restarted server, to show that it really serves.
# Usage: benches/restart.sh [SIZE_GIB]   (default 10)
# The store is warm in the page cache (it was just written); a cold disk adds its own time
# to anything that reads the data. Scratch space: $BENCH_DIR or target/bench-restart.
set -euo pipefail
cd "$(dirname "$0")/.."
size_gib=${1:-10}
work=${BENCH_DIR:-$PWD/target/bench-restart}
py=/usr/bin/python3   # Debian's python3 has the libtorrent binding (python3-libtorrent)

missing=()
command -v bc >/dev/null || missing+=(bc)
"$py" -c 'import libtorrent' 2>/dev/null || missing+=(python3-libtorrent)
if ((${#missing[@]})); then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        echo "installing ${missing[*]}" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2 \
            || { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2; }
    else
        echo "restart.sh needs the Debian packages: ${missing[*]} (apt-get install -y ${missing[*]})" >&2
        exit 1
    fi
fi

cargo build --release --quiet
cas=$PWD/target/release/cas

serve_pid=
cleanup() {
    if [[ -n $serve_pid ]]; then
        kill "$serve_pid" 2>/dev/null || true
        wait "$serve_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
rm -rf "$work" && mkdir -p "$work/src"

now() { date +%s.%N; }
elapsed() { echo "$(now) - $1" | bc -l; }
free_port() { "$py" -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
die() { echo "restart.sh: $*" >&2; exit 1; }

echo "making $size_gib files of 1 GiB of random data in $work" >&2
for i in $(seq -w "$size_gib"); do
    head -c $((1 << 30)) /dev/urandom > "$work/src/f$i.img"
done
last=f$(seq -w "$size_gib" | tail -1).img
echo "importing them" >&2
"$cas" --store "$work/store" init --piece-length 1M >/dev/null
t=$(now)
"$cas" --store "$work/store" import "$work/src" --name bench >/dev/null
import_s=$(elapsed "$t")
"$cas" --store "$work/store" torrent "bench:$last" -o "$work/last.torrent"
rm -rf "$work/src"   # the store holds it; leave the page cache to the store

# start_serve N: starts `cas serve`, waits for its "seeding" line; sets serve_pid,
# start_s (exec to line), line.
start_serve() {
    local out=$work/serve$1.out err=$work/serve$1.err t end
    t=$(now)
    "$cas" --store "$work/store" serve --listen 127.0.0.1:0 > "$out" 2> "$err" &
    serve_pid=$!
    end=$(($(date +%s) + 600))
    until grep -qs '^seeding' "$out"; do
        kill -0 "$serve_pid" 2>/dev/null || die "cas serve exited: $(tail -5 "$err")"
        (($(date +%s) < end)) || die "no 'seeding' line from cas serve after 600 s"
        sleep 0.01
    done
    start_s=$(elapsed "$t")
    line=$(grep -m1 '^seeding' "$out")
}
# stop_serve: SIGTERM, waits for the exit; sets stop_s.
stop_serve() {
    local t rc=0
    t=$(now)
    kill -TERM "$serve_pid"
    wait "$serve_pid" || rc=$?
    stop_s=$(elapsed "$t")
    serve_pid=
    ((rc == 0)) || die "cas serve exited with status $rc on SIGTERM"
}

start_serve 1
first_s=$start_s
echo "first start: $first_s s ($line)" >&2
stop_serve
first_stop_s=$stop_s

start_serve 2
restart_s=$start_s
echo "restart: $restart_s s ($line)" >&2
port=${line##*:}

mkdir -p "$work/leech"
t=$(now)
"$py" tests/it/peers/lt_download.py "$work/last.torrent" "$work/leech" "$(free_port)" 127.0.0.1 "$port" 600 \
    > "$work/lt.json"
fetch_s=$(elapsed "$t")
grep -q '"seeding": true' "$work/lt.json" || die "libtorrent could not fetch $last: $(cat "$work/lt.json")"
pieces=$("$py" -c 'import json,sys; j=json.load(open(sys.argv[1])); print("%d/%d" % (j["have"], j["num_pieces"]))' "$work/lt.json")
rm -rf "$work/leech"
stop_serve

printf '%-52s %8s\n' "cas serve, $size_gib x 1 GiB stored" seconds
printf '%-52s %8.2f\n' "import" "$import_s"
printf '%-52s %8.2f\n' "first start, exec to 'seeding' line" "$first_s"
printf '%-52s %8.2f\n' "stop (SIGTERM to exit)" "$first_stop_s"
printf '%-52s %8.2f  (goal <= 5)\n' "restart, exec to 'seeding' line" "$restart_s"
printf '%-52s %8.2f  (%s pieces, %.0f MiB/s)\n' "then libtorrent fetches $last (1 GiB)" "$fetch_s" \
    "$pieces" "$(echo "1024 / $fetch_s" | bc -l)"
