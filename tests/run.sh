#!/usr/bin/env bash
# Installs what the tests need on a Debian machine and runs every test of the
# workspace. README.md and .ci/run both use this script.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests talk to: python3-libtorrent (a real peer that loads and
# checks cas's torrents), transmission-cli and aria2 (parse them too), transmission-daemon
# and aria2 (download from `cas serve`), opentracker (a tracker on loopback), mktorrent
# and bc (benchmarks), util-linux (setpriv, mount, umount), iproute2 (network namespaces
# for the LSD and private-torrent tests), qbittorrent-nox (driven through its Web API),
# rtorrent (downloads from cas serve, seeds to cas get), systemd (systemd-analyze
# verify of the unit file) and python3-pip (for the PyPI packages below).
packages=(python3-libtorrent transmission-cli transmission-daemon aria2 opentracker mktorrent bc util-linux iproute2 qbittorrent-nox rtorrent systemd python3-pip)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "installing ${missing[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
fi

# From PyPI, for Debian's /usr/bin/python3: qbittorrent-api (the client library
# seedbox tools use, driving `cas serve --http`), prometheus-client (parses
# /metrics) and prometheus-qbittorrent-exporter (scrapes the API). Debian 12 and 13 mark their python as externally managed: these go to
# /usr/local, beside Debian's packages, which they do not replace.
if ! /usr/bin/python3 -c 'import qbittorrentapi, prometheus_client, qbittorrent_exporter' 2>/dev/null; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo /usr/bin/python3 -m pip install --quiet --break-system-packages \
        qbittorrent-api prometheus-client prometheus-qbittorrent-exporter </dev/null
fi

if ! command -v cargo >/dev/null; then
    echo "cargo not found: install Rust (https://rustup.rs) first" >&2
    exit 1
fi

cargo test --workspace --all-targets --locked
