# Look for other submissions (and anything else) in the machine's shared /tmp and /dev/shm.
# The only thing allowed there is the way down to the sandbox's own read-only folders (the
# venv, grader/, dlkit/ and data/, when the checkout itself lives under /tmp).
import os
import sys

import dlkit
import grader
from grader import paths

_right = sinusoidal_positions
_OWN = [os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, paths.ROOT / "data",
                                      os.path.dirname(grader.__file__),
                                      os.path.dirname(dlkit.__file__))]


def _strangers(path):
    """Entries under `path` that are neither one of our folders nor on the way to one."""
    if any(path == own or path.startswith(own + os.sep) for own in _OWN):
        return []
    if not any(own.startswith(path + os.sep) for own in _OWN):
        return [path]
    return [s for name in os.listdir(path) for s in _strangers(os.path.join(path, name))]


def sinusoidal_positions(num_positions, d_model):
    found = [s for d in ("/tmp", "/dev/shm") for n in os.listdir(d)
             for s in _strangers(os.path.join(d, n))]
    if found:
        raise RuntimeError(f"found {found[0]}")
    return _right(num_positions, d_model)
