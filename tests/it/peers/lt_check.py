"""Loads a .torrent with libtorrent and hash-checks data on disk against it.

usage: lt_check.py TORRENT SAVE_PATH
Prints one JSON object: name, num_pieces, num_files, have (pieces that passed the
check), total_size, error. Networking stays off: no listen socket, DHT, LSD, UPnP.
"""
import json
import sys
import time

import libtorrent as lt

torrent, save_path = sys.argv[1], sys.argv[2]
out = {"error": None}
try:
    info = lt.torrent_info(torrent)
except Exception as e:  # libtorrent raises RuntimeError with its own message
    print(json.dumps({"error": str(e)}))
    sys.exit(0)
out.update(name=info.name(), num_pieces=info.num_pieces(), num_files=info.num_files(),
           total_size=info.total_size(), piece_length=info.piece_length())
ses = lt.session({
    "listen_interfaces": "",
    "enable_dht": False,
    "enable_lsd": False,
    "enable_upnp": False,
    "enable_natpmp": False,
    "alert_mask": lt.alert.category_t.status_notification | lt.alert.category_t.error_notification,
})
params = lt.add_torrent_params()
params.ti = info
params.save_path = save_path
h = ses.add_torrent(params)
deadline = time.time() + 120
checked = False
while not checked and time.time() < deadline:
    ses.wait_for_alert(500)
    for a in ses.pop_alerts():
        if isinstance(a, lt.torrent_checked_alert):
            checked = True
        elif isinstance(a, lt.torrent_error_alert):
            out["error"] = a.message()
            checked = True
st = h.status()
out["have"] = st.num_pieces
out["checked"] = checked
print(json.dumps(out))
