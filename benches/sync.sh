#!/usr/bin/env bash
# One directory from one node to eight over a switched LAN, every link capped:
#   (a) cas sync, one follower    the time for a single follower to hold the directory
#   (b) cas sync, eight followers all started at once; wall time until all eight hold it
#   (c) rsync, eight targets      `rsync -a` from the source to each node in turn (an
#                                 rsync daemon in each), the total
# Goal: (b) <= 1.5 x (a): followers share what they receive, so eight cost about what one
# does; rsync pushes every copy through the source's link.
# Usage: benches/sync.sh [SIZE_MIB] [RATE]   (default 256 MiB, 100mbit)
# RATES=FILE: also write what each node sent and received in each second of (b) to FILE.
# Nodes are network namespaces on one bridge (a hub namespace), 10.97.0.1 the source and
# 10.97.0.2-9 the followers; every link is capped to RATE (tc tbf, both ends). The source's
# `cas sync` publishes the directory before the followers start; they find it by LSD
# only. A follower is done when it prints that it applied the source's tree; the
# directories are compared with the source's at the end. Stores are made by `cas init`
# (1 MiB pieces); the channel cuts its trees in $PIECE_LENGTH pieces when that is set
# (`cas channel new --piece-length`; default: the channel's default, 256 KiB).
# Needs root, iproute2 and rsync (installed with apt-get when missing). Scratch space:
# $BENCH_DIR or target/bench-sync.
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-256}
rate=${2:-100mbit}
followers=8
work=${BENCH_DIR:-$PWD/target/bench-sync}
py=/usr/bin/python3
new_channel=(channel new bench ${PIECE_LENGTH:+--piece-length "$PIECE_LENGTH"} --json)

[[ $(id -u) == 0 ]] || { echo "sync.sh needs root (network namespaces)" >&2; exit 1; }
missing=()
command -v rsync >/dev/null || missing+=(rsync)
command -v tc >/dev/null || missing+=(iproute2)
if ((${#missing[@]})); then
    echo "installing ${missing[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2 \
        || { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2; }
fi

cargo build --release --quiet
cas=$PWD/target/release/cas

# --- the LAN, removed whatever happens ----------------------------------------------------
tag=csb$$
hub=$tag-hub
ns() { echo "$tag-$1"; }
addr() { echo "10.97.0.$(($1 + 1))"; }
cleanup() {
    local n p
    for n in $(ip netns list | awk '{print $1}' | grep "^$tag-"); do
        for p in $(ip netns pids "$n"); do kill -9 "$p" 2>/dev/null || true; done
        ip netns del "$n" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
die() { echo "sync.sh: $*" >&2; exit 1; }

# tc wants a burst of at least a timer tick's worth of bytes; 20 ms of RATE, >= 64 KiB.
burst=$(echo "$rate" | awk '{
    n = $0 + 0; u = tolower($0); sub(/^[0-9.]+/, "", u)
    m = (u == "kbit") ? 1e3 : (u == "mbit") ? 1e6 : (u == "gbit") ? 1e9 : (u == "bit" || u == "") ? 1 : -1
    if (m < 0) exit 1
    b = n * m / 8 / 50; if (b < 65536) b = 65536; printf "%d", b }') \
    || die "RATE is a number and kbit, mbit or gbit: $rate"

ip netns add "$hub"
ip -n "$hub" link set lo up
ip -n "$hub" link add br0 type bridge mcast_snooping 0 stp_state 0 forward_delay 0
ip -n "$hub" link set br0 up
for ((i = 0; i <= followers; i++)); do
    n=$(ns $i)
    ip netns add "$n"
    ip link add "p$i" netns "$hub" type veth peer name lan0 netns "$n"
    ip -n "$hub" link set "p$i" master br0
    ip -n "$hub" link set "p$i" up
    ip -n "$n" link set lo up
    ip -n "$n" addr add "$(addr $i)/24" dev lan0
    ip -n "$n" link set lan0 up
    ip -n "$n" route add 224.0.0.0/4 dev lan0
    tc -n "$hub" qdisc add dev "p$i" root tbf rate "$rate" burst "$burst" latency 50ms
    tc -n "$n" qdisc add dev lan0 root tbf rate "$rate" burst "$burst" latency 50ms
done

# --- the source directory: SIZE_MIB in eight files, and a few small ones ---------------------
rm -rf "$work" && mkdir -p "$work/src/sub"
each=$((size_mib * 1024 / 8))
for k in 1 2 3 4 5 6 7 8; do
    head -c $((each * 1024)) /dev/urandom >"$work/src/part$k.bin"
done
for k in $(seq 1 20); do echo "note $k" >"$work/src/sub/note$k.txt"; done

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
# applied_tree of the store $1's channel, or nothing.
applied() { channel_field "$1" applied_tree; }
# channel_field STORE FIELD: FIELD of the store's channel in `cas status --json`, or nothing.
channel_field() {
    CAS_STORE=$1 "$cas" status --json 2>/dev/null \
        | "$py" -c 'import json,sys; v=json.load(sys.stdin)["channels"][0][sys.argv[1]]; print("" if v is None else v)' "$2" \
            2>/dev/null || true
}
# launch_sync I STORE DIR: cas sync on node I, in the background.
launch_sync() {
    local i=$1
    ip netns exec "$(ns $i)" env CAS_STORE="$2" "$cas" sync "$3" --channel bench --node "n$i" \
        --listen "$(addr $i):7000" --fetch-timeout 3600 >"$work/out$i" 2>"$work/err$i" &
}
# wait_started I: waits for the first line of node I's cas sync.
wait_started() {
    local i=$1 deadline=$((SECONDS + 60))
    until grep -q '^syncing' "$work/out$i" 2>/dev/null; do
        ((SECONDS < deadline)) || die "cas sync on node $i did not start: $(cat "$work/err$i")"
        sleep 0.1
    done
}
start_sync() {
    launch_sync "$@"
    wait_started "$1"
}
stop_node() {
    local p
    for p in $(ip netns pids "$(ns $1)"); do kill "$p" 2>/dev/null || true; done
    while [[ -n $(ip netns pids "$(ns $1)") ]]; do sleep 0.1; done
}
# sent I: bytes node I has sent into the switch so far.
sent() {
    ip -n "$hub" -s -j link show "p$1" | "$py" -c 'import json,sys; print(json.load(sys.stdin)[0]["stats64"]["rx"]["bytes"])'
}
mib() { awk -v b="$1" 'BEGIN { printf "%.0f", b / 1048576 }'; }
# payload_out I: payload bytes node I's engine has sent since it started (its `cas status`).
payload_out() {
    local n
    n=$(channel_field "$work/s$1" bytes_out)
    echo "${n:-0}"
}
# sample_rates FILE: the switch's byte counters for every node, once a second, until killed;
# then FILE holds a table of MiB/s sent and received by each node in each second.
sample_rates() {
    local raw=$work/rates.raw
    trap 'rates_table "$raw" >"$1"; exit 0' TERM
    while :; do
        echo "T $(now)"
        ip netns exec "$hub" cat /proc/net/dev | grep ' p[0-9]*:' || true
        sleep 1 & wait $!
    done >"$raw"
}
rates_table() {
    "$py" - "$1" <<'PY'
import sys
rows = []
for line in open(sys.argv[1]):
    if line.startswith("T "):
        rows.append({"t": float(line.split()[1])})
    elif ":" in line and rows:
        name, rest = line.split(":", 1)
        f = rest.split()
        if len(f) >= 9:
            rows[-1][name.strip()] = (int(f[0]), int(f[8]))  # port rx = node sent
ports = sorted((k for k in rows[0] if k != "t"), key=lambda p: int(p[1:])) if rows else []
print("second " + " ".join(f"{'n' + p[1:] + ' sent/recv':>14}" for p in ports) + "  (MiB/s)")
for a, b in zip(rows, rows[1:]):
    dt = b["t"] - a["t"]
    cell = lambda p: "%6.1f/%-6.1f" % tuple((b[p][k] - a[p][k]) / dt / 2**20 for k in (0, 1))
    print(f"{b['t'] - rows[0]['t']:6.0f} " + " ".join(f"{cell(p):>14}" for p in ports if p in a and p in b))
PY
}
# fresh_follower I: an empty store that follows the channel, and an empty directory.
fresh_follower() {
    rm -rf "$work/s$1" "$work/d$1" && mkdir -p "$work/d$1"
    CAS_STORE=$work/s$1 "$cas" init >/dev/null
    CAS_STORE=$work/s$1 "$cas" channel join bench "$public" >/dev/null
}
# wait_done START I...: waits until every follower applied the source's tree; prints each
# one's time (from START) to fd 3 as "I SECONDS". It reads the followers' "applied
# update" lines rather than asking `cas status` (a process each time: with nine nodes on
# a few cores, polling that way took a tenth of the CPU from the run it measures).
wait_done() {
    local start=$1 i
    shift
    local left=("$@") deadline=$((SECONDS + 3600))
    while ((${#left[@]})); do
        local still=()
        for i in "${left[@]}"; do
            # A builtin: a grep per follower per poll took 5 % of the CPU (perf record -a).
            local lines=() line applied=0
            [[ -e $work/out$i ]] && mapfile -t lines <"$work/out$i"
            for line in "${lines[@]+"${lines[@]}"}"; do
                [[ $line == "applied update "*" (tree $tree)"* ]] && applied=1
            done
            if ((applied)); then
                echo "$i $(since "$start")" >&3
            else
                still+=("$i")
            fi
        done
        left=("${still[@]+"${still[@]}"}")
        ((${#left[@]})) || break
        ((SECONDS < deadline)) || die "followers ${left[*]} did not finish; see $work/err*"
        sleep 0.1
    done
}

# --- the source publishes --------------------------------------------------------------
mkdir -p "$work/d0"
cp -a "$work/src/." "$work/d0/"
CAS_STORE=$work/s0 "$cas" init >/dev/null
public=$(CAS_STORE=$work/s0 "$cas" "${new_channel[@]}" | "$py" -c 'import json,sys; print(json.load(sys.stdin)["public"])')
start_sync 0 "$work/s0" "$work/d0"
deadline=$((SECONDS + 600))
until grep -q '^published update' "$work/out0"; do
    ((SECONDS < deadline)) || die "the source did not publish: $(cat "$work/err0")"
    sleep 0.2
done
tree=$(applied "$work/s0")
[[ -n $tree ]] || die "no applied tree on the source"
echo "source: $size_mib MiB in $(find "$work/src" -type f | wc -l) files, tree $tree; pieces $(channel_field "$work/s0" piece_length) bytes; links $rate (burst $burst bytes)"

# --- (a) one follower --------------------------------------------------------------------
fresh_follower 1
t=$(now)
start_sync 1 "$work/s1" "$work/d1"
one=$(wait_done "$t" 1 3>&1 | awk '{print $2}')
diff -r -x .cas-sync "$work/src" "$work/d1" >/dev/null || die "follower 1's directory differs from the source's"
stop_node 1
echo "(a) cas sync, 1 follower: $one s"

# --- (b) eight followers -----------------------------------------------------------------
for ((i = 1; i <= followers; i++)); do fresh_follower $i; done
before=()
for ((i = 0; i <= followers; i++)); do before[i]=$(sent $i); done
source_payload=$(payload_out 0)
[[ -n ${RATES:-} ]] && { sample_rates "$RATES" & sampler=$!; }
t=$(now)
# All eight at once: started one after the other, each waiting for the one before,
# the last began seconds after the first (the rates showed 2-3 s).
for ((i = 1; i <= followers; i++)); do launch_sync $i "$work/s$i" "$work/d$i"; done
for ((i = 1; i <= followers; i++)); do wait_started $i; done
each_time=$(wait_done "$t" $(seq 1 $followers) 3>&1)
all=$(since "$t")
[[ -n ${RATES:-} ]] && { kill "$sampler"; wait "$sampler" || true; }
echo "(b) cas sync, $followers followers: $all s (each: $(echo "$each_time" | sort -n | awk '{printf "%s%s:%s", sep, $1, $2; sep=" "}'))"
from_source=$(($(sent 0) - before[0]))
from_followers=0
for ((i = 1; i <= followers; i++)); do from_followers=$((from_followers + $(sent $i) - before[i])); done
echo "    sent: the source $(mib $from_source) MiB ($(ratio "$(mib $from_source)" "$size_mib") x the directory), the followers $(mib $from_followers) MiB"
payload=$(($(payload_out 0) - source_payload))
for ((i = 1; i <= followers; i++)); do payload=$((payload + $(payload_out $i))); done
echo "    payload sent by all nine: $(mib $payload) MiB, $(ratio "$(mib $payload)" $((size_mib * followers))) x what the eight followers needed"
[[ -n ${RATES:-} ]] && echo "    rates each second: $RATES"
for ((i = 1; i <= followers; i++)); do
    diff -r -x .cas-sync "$work/src" "$work/d$i" >/dev/null || die "follower $i's directory differs from the source's"
done
for ((i = 0; i <= followers; i++)); do stop_node $i; done

# --- (c) rsync to each in turn -----------------------------------------------------------
rsync_one=
rsync_all=0
for ((i = 1; i <= followers; i++)); do
    rm -rf "$work/r$i" && mkdir -p "$work/r$i"
    cat >"$work/rsyncd$i.conf" <<EOF
pid file = $work/rsyncd$i.pid
use chroot = no
[m]
    path = $work/r$i
    read only = no
    uid = root
    gid = root
EOF
    ip netns exec "$(ns $i)" rsync --daemon --no-detach --config="$work/rsyncd$i.conf" \
        --address="$(addr $i)" --port=873 2>"$work/rsyncd$i.err" &
    deadline=$((SECONDS + 30))
    until ip netns exec "$(ns 0)" rsync "rsync://$(addr $i)/" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "rsync daemon on node $i: $(cat "$work/rsyncd$i.err")"
        sleep 0.1
    done
    ti=$(now)
    ip netns exec "$(ns 0)" rsync -a "$work/src/" "rsync://$(addr $i)/m/"
    took=$(since "$ti")
    [[ -n $rsync_one ]] || rsync_one=$took
    rsync_all=$(awk -v a="$rsync_all" -v b="$took" 'BEGIN { printf "%.2f", a + b }')
    stop_node $i
    diff -r -x .cas-sync "$work/src" "$work/r$i" >/dev/null || die "rsync to node $i: directories differ"
done
echo "(c) rsync -a to $followers nodes in turn: $rsync_all s (the first: $rsync_one s)"

echo
echo "| $size_mib MiB, links $rate | seconds |"
echo "| --- | --- |"
echo "| cas sync, 1 follower | $one |"
echo "| cas sync, $followers followers | $all |"
echo "| rsync -a, 1 target | $rsync_one |"
echo "| rsync -a, $followers targets in turn | $rsync_all |"
echo
echo "all $followers / one: $(ratio "$all" "$one") (goal <= 1.5); rsync $followers / cas sync $followers: $(ratio "$rsync_all" "$all")"
