"""Makes a .torrent with libtorrent, as a user of a libtorrent-based client would.

usage: lt_make.py PATH OUT PIECE_LENGTH TRACKER PRIVATE(0|1)
PATH is a file or a directory; the torrent's name is its last component.
"""
import os
import sys

import libtorrent as lt

path, out, piece_length, tracker, private = sys.argv[1:6]
fs = lt.file_storage()
lt.add_files(fs, path)
t = lt.create_torrent(fs, int(piece_length))
t.add_tracker(tracker)
t.set_priv(private == "1")
lt.set_piece_hashes(t, os.path.dirname(os.path.abspath(path)))
with open(out, "wb") as f:
    f.write(lt.bencode(t.generate()))
