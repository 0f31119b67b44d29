#!/usr/bin/env bash
# Loopback transfer of one file, one seeder and one leecher, side by side in one run:
#   cas -> cas                 `cas serve` of a store holding the file; `cas get --peer` into
#                              a fresh store
#   libtorrent -> libtorrent   tests/it/peers/lt_seed.py; lt_download.py into a fresh dir
#   aria2 -> aria2             aria2c seeding; a second aria2c downloading into a fresh dir
#   librqbit -> librqbit       benches/rqbit_pair.rs: the engine cas is built on, with its
#                              own file storage and no store (how much of cas's time is
#                              the engine's)
#   cas -> libtorrent          `cas serve` seeding a stock libtorrent client
#   libtorrent -> cas          `cas get --peer` from the libtorrent seeder
# Besides seconds, each pair's CPU seconds per GiB, seeder plus leecher (user + system:
# the leecher's from the shell's `times`, the seeder's from /proc/PID/stat before and
# after the transfer).
# Goal: cas -> cas at least 1.5 x as fast as libtorrent -> libtorrent.
# Usage: benches/transfer.sh [SIZE_MIB] [ROUNDS]   (default 2048 MiB, 3 rounds; medians)
# Every pair moves the same torrent (the file's own, written by `cas torrent`), with
# 1 MiB pieces. Times are wall times of the downloading process, start to exit. cas,
# librqbit and libtorrent are told the seeder's address; aria2 has no such option and finds its seeder
# through an opentracker on loopback. DHT, LSD and PEX are off everywhere. The source file
# stays in the page cache. Scratch space: $BENCH_DIR or target/bench-transfer.
# $RQBIT_PAIR_OPTS goes to both rqbit_pair processes, e.g. "--fast --verify" for the
# storage hooks of the vendored librqbit (see benches/rqbit_pair.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-2048}
rounds=${2:-3}
work=${BENCH_DIR:-$PWD/target/bench-transfer}
py=/usr/bin/python3   # Debian's python3 has the libtorrent binding (python3-libtorrent)

# --- tools ------------------------------------------------------------------------------
missing=()
command -v aria2c >/dev/null || missing+=(aria2)
command -v opentracker >/dev/null || missing+=(opentracker)
command -v bc >/dev/null || missing+=(bc)
"$py" -c 'import libtorrent' 2>/dev/null || missing+=(python3-libtorrent)
if ((${#missing[@]})); then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        echo "installing ${missing[*]}" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2 \
            || { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2; }
    else
        echo "transfer.sh needs the Debian packages: ${missing[*]} (apt-get install -y ${missing[*]})" >&2
        exit 1
    fi
fi

cargo build --release --quiet
cas=${CARGO_TARGET_DIR:-$PWD/target}/release/cas
rqbit=$(cargo build --release --bench rqbit_pair --message-format=json-render-diagnostics |
    grep '"reason":"compiler-artifact"' | grep '"name":"rqbit_pair"' |
    sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
[[ -x $rqbit ]] || { echo "transfer.sh: could not find the rqbit_pair bench binary" >&2; exit 1; }
peers=$PWD/tests/it/peers

# --- processes and scratch space, cleaned up whatever happens ----------------------------
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
rm -rf "$work" && mkdir -p "$work/src"

now() { date +%s.%N; }
elapsed() { echo "$(now) - $1" | bc -l; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
free_port() { "$py" -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
die() { echo "transfer.sh: $*" >&2; exit 1; }
# cpu_of PID: user + system CPU seconds a process has used so far.
cpu_of() { awk -v t="$(getconf CLK_TCK)" '{print ($14 + $15) / t}' "/proc/$1/stat"; }
# timed NAME SEEDER_PID CMD...: runs CMD (the leecher); appends its wall seconds to
# t.NAME and the CPU seconds per GiB of leecher plus seeder to c.NAME.
timed() {
    local name=$1 seeder=$2; shift 2
    local s0 t rc
    s0=$(cpu_of "$seeder")
    t=$(now)
    ( "$@"; rc=$?; times > "$work/times"; exit $rc ) || return 1
    echo "$(elapsed "$t")" >> "$work/t.$name"
    local leech seed
    leech=$(sed -n 2p "$work/times" | awk '{gsub(/s/,""); split($1,a,"m"); split($2,b,"m"); print a[1]*60+a[2]+b[1]*60+b[2]}')
    seed=$(echo "$(cpu_of "$seeder") - $s0" | bc -l)
    echo "($leech + $seed) * 1024 / $size_mib" | bc -l >> "$work/c.$name"
}
# wait_for SECONDS WHAT COMMAND...: polls COMMAND until it succeeds.
wait_for() {
    local limit=$1 what=$2; shift 2
    local end=$(($(date +%s) + limit))
    until "$@"; do
        (($(date +%s) < end)) || die "no $what after $limit s"
        sleep 0.05
    done
}

echo "making $size_mib MiB of random data in $work" >&2
head -c $((size_mib << 20)) /dev/urandom > "$work/src/disk.img"

# The seeder store, the file's torrent, its name in the torrent and its info-hash.
"$cas" --store "$work/seeder" init --piece-length 1M >/dev/null
"$cas" --store "$work/seeder" import "$work/src" --name bench --json > "$work/import.json"
"$cas" --store "$work/seeder" torrent bench:disk.img -o "$work/file.torrent"
read -r name info_hash < <("$py" -c 'import libtorrent as lt, sys
t = lt.torrent_info(sys.argv[1]); print(t.name(), t.info_hash())' "$work/file.torrent")
# libtorrent and aria2 seed the source file itself, under the torrent's name (hard links:
# one inode, one copy in the page cache).
mkdir -p "$work/seed-lt" "$work/seed-aria2" "$work/seed-rq"
ln "$work/src/disk.img" "$work/seed-lt/$name"
ln "$work/src/disk.img" "$work/seed-rq/$name"
ln "$work/src/disk.img" "$work/seed-aria2/$name"
cat "$work/src/disk.img" > /dev/null   # warm the page cache for every contender alike

# --- seeders, started once --------------------------------------------------------------
"$cas" --store "$work/seeder" serve --listen 127.0.0.1:0 > "$work/serve.out" 2> "$work/serve.err" &
cas_pid=$!; pids+=($!)
wait_for 300 "'seeding' line from cas serve (see $work/serve.err)" grep -qs '^seeding' "$work/serve.out"
cas_port=$(sed -n 's/^seeding .* on .*:\([0-9]*\)$/\1/p' "$work/serve.out")
[[ -n $cas_port ]] || die "cannot read the port from: $(cat "$work/serve.out")"

# librqbit checks the file it is given before it seeds it.
"$rqbit" ${RQBIT_PAIR_OPTS:-} seed "$work/file.torrent" "$work/seed-rq" > "$work/rq_seed.out" 2> "$work/rq_seed.err" &
rq_pid=$!; pids+=($!)
wait_for 300 "'seeding' line from rqbit_pair (see $work/rq_seed.err)" grep -qs '^seeding' "$work/rq_seed.out"
rq_port=$(sed -n 's/^seeding on \([0-9]*\)$/\1/p' "$work/rq_seed.out")

lt_port=$(free_port)
"$py" "$peers/lt_seed.py" "$work/file.torrent" "$work/seed-lt" "$lt_port" "$work/lt_seed.json" \
    > "$work/lt_seed.log" 2>&1 &
lt_pid=$!; pids+=($!)
lt_seeding() { [[ -f $work/lt_seed.json ]] && grep -q '"seeding": true' "$work/lt_seed.json"; }
wait_for 300 "libtorrent seeder (see $work/lt_seed.json)" lt_seeding

# opentracker, serving only this info-hash (it changes directory: absolute paths only).
echo "$info_hash" > "$work/whitelist"
tracker_port=$(free_port)
opentracker -i 127.0.0.1 -p "$tracker_port" -P "$tracker_port" -w "$work/whitelist" \
    > "$work/opentracker.log" 2>&1 &
pids+=($!)
tracker=http://127.0.0.1:$tracker_port/announce
aria2_common=(--enable-dht=false --enable-dht6=false --bt-enable-lpd=false
    --enable-peer-exchange=false --bt-tracker="$tracker" --summary-interval=0
    --show-console-readout=false --console-log-level=warn)
aria2_port=$(free_port)
aria2c "${aria2_common[@]}" --listen-port="$aria2_port" -d "$work/seed-aria2" \
    --seed-ratio=0.0 --bt-seed-unverified=true "$work/file.torrent" > "$work/aria2_seed.log" 2>&1 &
aria2_pid=$!; pids+=($!)
# Seeding once the tracker counts one complete peer (a scrape).
seeders() {
    "$py" - "$tracker_port" "$info_hash" <<'EOF'
import binascii, re, sys, urllib.parse, urllib.request
port, ih = sys.argv[1:3]
q = urllib.parse.quote(binascii.unhexlify(ih))
try:
    body = urllib.request.urlopen("http://127.0.0.1:%s/scrape?info_hash=%s" % (port, q), timeout=2).read()
except OSError:
    sys.exit(1)
m = re.search(rb"8:completei(\d+)e", body)
sys.exit(0 if m and int(m.group(1)) > 0 else 1)
EOF
}
wait_for 60 "aria2 seeder announced to opentracker (see $work/aria2_seed.log)" seeders

# --- rounds -------------------------------------------------------------------------------
size=$((size_mib << 20))
# Each contender writes SIZE to disk through the page cache. On a virtual machine, memory
# the guest has not touched lately costs a host fault a page (1 GiB of fresh page cache
# took 2.4 s to write here, the same again 0.3 s): so before each timed transfer the same
# amount of page cache is written and freed, and every contender starts alike.
warm() {
    dd if=/dev/zero of="$work/warm" bs=1M count="$size_mib" status=none
    rm -f "$work/warm"
    sync
}
# cas_get NAME SEEDER_PID SEEDER_PORT: `cas get` into a fresh store from that seeder,
# timed as NAME; the store must check clean after it.
cas_get() {
    rm -rf "$work/leech"
    "$cas" --store "$work/leech" init --piece-length 1M >/dev/null
    warm
    timed "$1" "$2" sh -c "exec \"$cas\" --store \"$work/leech\" get \"$work/file.torrent\" \
        --peer 127.0.0.1:$3 --listen 127.0.0.1:0 --json --timeout 600 > \"$work/get.json\"" \
        || die "cas get ($1) failed (round $r)"
    "$cas" --store "$work/leech" fsck > "$work/fsck.out" || die "fsck after $1: $(cat "$work/fsck.out")"
}
# lt_get NAME SEEDER_PID SEEDER_PORT: libtorrent into a fresh directory from that
# seeder, timed as NAME.
lt_get() {
    rm -rf "$work/leech" && mkdir -p "$work/leech"
    local port
    port=$(free_port)
    warm
    timed "$1" "$2" sh -c "exec \"$py\" \"$peers/lt_download.py\" \"$work/file.torrent\" \"$work/leech\" \
        $port 127.0.0.1 $3 600 > \"$work/lt.json\""
    grep -q '"seeding": true' "$work/lt.json" || die "libtorrent download ($1) failed: $(cat "$work/lt.json")"
}
for r in $(seq "$rounds"); do
    # cas -> cas
    cas_get cas "$cas_pid" "$cas_port"
    s=$(tail -1 "$work/t.cas")
    read -r wire own < <("$py" -c 'import json,sys; j=json.load(open(sys.argv[1]))
print(j["bytes_from_wire"], j["seconds"])' "$work/get.json")
    ((wire == size)) || die "cas get fetched $wire bytes, not $size: $(cat "$work/get.json")"
    echo "$own" >> "$work/t.cas_own"
    echo "round $r: cas -> cas $s s (cas get's own seconds: $own)" >&2

    # libtorrent -> libtorrent
    lt_get lt "$lt_pid" "$lt_port"
    echo "round $r: libtorrent -> libtorrent $(tail -1 "$work/t.lt") s" >&2

    # cas -> libtorrent
    lt_get cas_lt "$cas_pid" "$cas_port"
    echo "round $r: cas -> libtorrent $(tail -1 "$work/t.cas_lt") s" >&2

    # libtorrent -> cas
    cas_get lt_cas "$lt_pid" "$lt_port"
    echo "round $r: libtorrent -> cas $(tail -1 "$work/t.lt_cas") s" >&2

    # aria2 -> aria2
    rm -rf "$work/leech" && mkdir -p "$work/leech"
    port=$(free_port)
    warm
    timed aria2 "$aria2_pid" aria2c "${aria2_common[@]}" --listen-port="$port" -d "$work/leech" --seed-time=0 \
        --file-allocation=none --bt-stop-timeout=600 "$work/file.torrent" > "$work/aria2.log" 2>&1 \
        || die "aria2c download failed: $(tail -5 "$work/aria2.log")"
    [[ $(stat -c %s "$work/leech/$name") == "$size" ]] || die "aria2c wrote a file of the wrong size"
    echo "round $r: aria2 -> aria2 $(tail -1 "$work/t.aria2") s" >&2

    # librqbit -> librqbit
    rm -rf "$work/leech" && mkdir -p "$work/leech"
    warm
    timed rq "$rq_pid" "$rqbit" ${RQBIT_PAIR_OPTS:-} get "$work/file.torrent" "$work/leech" "127.0.0.1:$rq_port" > "$work/rq.json" \
        2> "$work/rq.err" || die "rqbit_pair get failed: $(tail -5 "$work/rq.err")"
    [[ $(stat -c %s "$work/leech/$name") == "$size" ]] || die "rqbit_pair wrote a file of the wrong size"
    echo "round $r: librqbit -> librqbit $(tail -1 "$work/t.rq") s" >&2
done
rm -rf "$work/leech"

cas_s=$(median < "$work/t.cas"); own_s=$(median < "$work/t.cas_own")
lt_s=$(median < "$work/t.lt"); aria2_s=$(median < "$work/t.aria2"); rq_s=$(median < "$work/t.rq")
caslt_s=$(median < "$work/t.cas_lt"); ltcas_s=$(median < "$work/t.lt_cas")
cpu() { median < "$work/c.$1"; }
mibs() { echo "scale=0; $size_mib / $1" | bc -l; }
printf '%-40s %8s %9s %12s\n' "pair ($size_mib MiB, median of $rounds)" seconds MiB/s "CPU-s/GiB"
row() { printf '%-40s %8.2f %9s %12.2f\n' "$1" "$2" "$(mibs "$2")" "$3"; }
row "cas -> cas" "$cas_s" "$(cpu cas)"
row "libtorrent -> libtorrent" "$lt_s" "$(cpu lt)"
row "cas -> libtorrent" "$caslt_s" "$(cpu cas_lt)"
row "libtorrent -> cas" "$ltcas_s" "$(cpu lt_cas)"
row "aria2 -> aria2 (via opentracker)" "$aria2_s" "$(cpu aria2)"
row "librqbit -> librqbit (own file storage)" "$rq_s" "$(cpu rq)"
printf '%-40s %8.2f %9s\n' "(cas get's own \"seconds\", in-process)" "$own_s" "$(mibs "$own_s")"
printf 'speed cas->cas / libtorrent->libtorrent:        %.2f (goal >= 1.5)\n' "$(echo "$lt_s / $cas_s" | bc -l)"
printf 'speed cas->libtorrent / libtorrent->libtorrent: %.2f (goal >= 1.0)\n' "$(echo "$lt_s / $caslt_s" | bc -l)"
printf 'speed librqbit->librqbit / libtorrent:          %.2f\n' "$(echo "$lt_s / $rq_s" | bc -l)"
printf 'speed cas->cas / librqbit->librqbit:            %.2f\n' "$(echo "$rq_s / $cas_s" | bc -l)"
printf 'speed cas->cas / aria2->aria2:                  %.2f\n' "$(echo "$aria2_s / $cas_s" | bc -l)"
