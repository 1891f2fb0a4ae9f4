# Use a descriptor inherited from the grader (a resource tracker pipe, a fixture file...).
import os
import stat

_right = sinusoidal_positions


def sinusoidal_positions(num_positions, d_model):
    others = []
    for fd in range(3, 1024):
        try:
            mode = os.fstat(fd).st_mode
        except OSError:
            continue
        if not stat.S_ISSOCK(mode):  # the worker's own channel is its only socket
            others.append(fd)
    if others:
        raise RuntimeError(f"inherited descriptors {others}")
    return _right(num_positions, d_model)
