# Forge a reply frame that claims a huge tensor in a few bytes (a "decompression bomb" of
# the wire format): the sizes must be checked against the bytes actually sent.
import json
import os
import stat
import struct
import time


def sinusoidal_positions(num_positions, d_model):
    channel = next(fd for fd in range(3, 64) if _is_socket(fd))
    huge = {"$t": 0, "dtype": "float32", "shape": [1 << 20, 1 << 20]}
    tree = {"$d": [["case", "positions/sinusoidal"], ["status", "ok"], ["outputs", huge]]}
    header = json.dumps({"tree": tree, "sizes": [16]}).encode()
    os.write(channel, b"GRD1" + struct.pack("<II", len(header), 16) + header + b"\0" * 16)
    time.sleep(60)


def _is_socket(fd):
    try:
        return stat.S_ISSOCK(os.fstat(fd).st_mode)
    except OSError:
        return False
