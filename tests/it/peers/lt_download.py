"""Downloads a torrent with libtorrent from one peer on loopback.

usage: lt_download.py TORRENT|MAGNET SAVE_PATH LISTEN_PORT PEER_HOST PEER_PORT [TIMEOUT_S]
Prints one JSON object: num_pieces, have, seeding, error, downloaded, failed_bytes
(bytes of pieces that failed their hash check: what a lying or broken seeder sent),
hash_failed (how many times a piece failed it). Settings (ltpeer.py): no
MSE/PE encryption unless LT_SETTINGS says so, no uTP, several connections per IP; no
DHT/LSD/UPnP.
"""
import json
import os
import sys
import time

import libtorrent as lt

import ltpeer

torrent, save, port, host, peer_port = sys.argv[1:6]
timeout = float(sys.argv[6]) if len(sys.argv) > 6 else 60
# LT_SETTINGS: more libtorrent settings, as a JSON object.
extra = json.loads(os.environ.get("LT_SETTINGS", "{}"))
ses = ltpeer.session(port, **extra, alert_mask=int(lt.alert.category_t.error_notification)
                     | int(lt.alert.category_t.status_notification))
hash_failed = 0
if torrent.startswith("magnet:"):
    # A magnet: the metadata comes from the peer first.
    params = lt.parse_magnet_uri(torrent)
    params.save_path = save
    h = ses.add_torrent(params)
else:
    h = ses.add_torrent({"ti": lt.torrent_info(torrent), "save_path": save})
deadline = time.time() + timeout
last_connect = 0
error = None
while time.time() < deadline:
    st = h.status()
    if st.is_seeding:
        break
    if st.errc.value() != 0:
        error = st.errc.message()
        break
    if time.time() - last_connect > 2:
        h.connect_peer((host, int(peer_port)))
        last_connect = time.time()
    for a in ses.pop_alerts():
        if isinstance(a, lt.hash_failed_alert):
            hash_failed += 1
    time.sleep(0.1)
for a in ses.pop_alerts():
    if isinstance(a, lt.hash_failed_alert):
        hash_failed += 1
st = h.status()
info = h.torrent_file()
print(json.dumps({"num_pieces": info.num_pieces() if info else None, "have": st.num_pieces,
                  "seeding": st.is_seeding, "error": error,
                  "downloaded": st.total_payload_download,
                  "failed_bytes": st.total_failed_bytes,
                  "hash_failed": hash_failed}))
