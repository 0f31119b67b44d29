"""Seeds a torrent with libtorrent on loopback until killed.

usage: lt_seed.py TORRENT SAVE_PATH LISTEN_PORT STATUS_FILE [UPLOAD_BYTES_PER_S]
LT_SETTINGS: more libtorrent settings, as a JSON object (listen_interfaces "[::1]:P").
The data must already be in SAVE_PATH. Once libtorrent has checked it and seeds, and
then twice a second, STATUS_FILE is replaced with one JSON object: seeding, uploaded
(payload bytes sent), peers. Settings (ltpeer.py): no MSE/PE encryption unless
LT_SETTINGS says so, no uTP, several connections per IP; no DHT/LSD/UPnP.
"""
import json
import os
import sys
import time

import libtorrent as lt

import ltpeer

torrent, save, port, status = sys.argv[1:5]
rate = int(sys.argv[5]) if len(sys.argv) > 5 else 0
extra = json.loads(os.environ.get("LT_SETTINGS", "{}"))
ses = ltpeer.session(port, upload_rate_limit=rate, **extra)
if rate:
    # libtorrent exempts local networks from rate limits (their own peer class);
    # loopback is put back in the global class, which the limit applies to.
    loopback = lt.ip_filter()
    loopback.add_rule("127.0.0.0", "127.255.255.255", 1 << ses.global_peer_class_id)
    ses.set_peer_class_filter(loopback)
h = ses.add_torrent({"ti": lt.torrent_info(torrent), "save_path": save})
while True:
    st = h.status()
    if st.is_seeding or st.errc.value() != 0:
        tmp = status + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"seeding": st.is_seeding, "uploaded": st.total_payload_upload,
                       "peers": st.num_peers, "error": st.errc.message()}, f)
        os.replace(tmp, status)
    time.sleep(0.5)
