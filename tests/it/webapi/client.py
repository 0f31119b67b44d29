"""Drives a qBittorrent WebUI API through python qbittorrent-api, the client library
many seedbox tools use. Usage: client.py URL USER PASSWORD < calls.json

calls.json is a list of [method, kwargs]: a qbittorrentapi.Client method, or
"wait" (kwargs: hash, states, seconds) polling torrents/info until the torrent's
state is one of states, or "sync_delta" (kwargs: call, a [method, kwargs]):
sync/maindata, the call, then sync/maindata with the rid of the first. Prints a JSON list: {"ok": result} or {"error": class,
"message": text} for each call, in order."""

import json
import sys
import time
from collections.abc import Mapping, Sequence

import qbittorrentapi


def plain(x):
    if isinstance(x, Mapping):
        return {str(k): plain(v) for k, v in x.items()}
    if isinstance(x, Sequence) and not isinstance(x, str):
        return [plain(v) for v in x]
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    return str(x)


def wait(c, hash, states, seconds):
    deadline = time.time() + seconds
    state = None
    while time.time() < deadline:
        found = c.torrents_info(torrent_hashes=hash)
        state = found[0]["state"] if found else None
        if state in states:
            return state
        time.sleep(0.2)
    raise TimeoutError(f"torrent {hash} still {state}, not one of {states}")


def main():
    url, user, password = sys.argv[1:4]
    calls = json.load(sys.stdin)
    c = qbittorrentapi.Client(
        host=url,
        username=user or None,
        password=password or None,
        REQUESTS_ARGS={"timeout": 30},
        DISABLE_LOGGING_DEBUG_OUTPUT=True,
    )
    out = []
    for name, kwargs in calls:
        try:
            if name == "wait":
                out.append({"ok": wait(c, **kwargs)})
            elif name == "sync_delta":
                first = plain(c.sync_maindata(rid=0))
                getattr(c, kwargs["call"][0])(**kwargs["call"][1])
                second = plain(c.sync_maindata(rid=first["rid"]))
                out.append({"ok": [first, second]})
            else:
                out.append({"ok": plain(getattr(c, name)(**kwargs))})
        except Exception as e:  # the test asserts on the class
            out.append({"error": type(e).__name__, "message": str(e)})
    print(json.dumps(out))


main()
