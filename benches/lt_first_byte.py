"""Times a libtorrent client fetching one magnet from one peer on loopback.

usage: lt_first_byte.py MAGNET SAVE_PATH LISTEN_PORT PEER_HOST PEER_PORT EXPECTED_FILE [TIMEOUT_S]
Prints one JSON object: metadata_s (magnet to metadata), first_byte_s (to the first
payload byte), done_s (to the whole file), same (the file saved equals EXPECTED_FILE).
"""
import hashlib
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "it", "peers"))
import libtorrent as lt  # noqa: E402

import ltpeer  # noqa: E402

magnet, save, port, host, peer_port, expected = sys.argv[1:7]
timeout = float(sys.argv[7]) if len(sys.argv) > 7 else 60
ses = ltpeer.session(port)
params = lt.parse_magnet_uri(magnet)
params.save_path = save
start = time.time()
h = ses.add_torrent(params)
h.connect_peer((host, int(peer_port)))
metadata = first = done = None
while time.time() - start < timeout:
    st = h.status()
    now = time.time() - start
    if metadata is None and st.has_metadata:
        metadata = now
    if first is None and st.total_payload_download > 0:
        first = now
    if st.is_seeding:
        done = now
        break
    time.sleep(0.005)


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


same = False
if done is not None:
    info = h.torrent_file()
    got = os.path.join(save, info.files().file_path(0))
    same = digest(got) == digest(expected)
print(json.dumps({"metadata_s": metadata, "first_byte_s": first, "done_s": done, "same": same}))
