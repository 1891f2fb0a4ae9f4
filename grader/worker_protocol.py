"""The sandbox's wire format: one frame = a small JSON header + the raw bytes of its tensors.

Nothing in it can execute code or inflate: the parent reads a fixed 12-byte frame head,
refuses a header or payload over its caps before reading them, and builds every tensor
from raw bytes whose length must equal numel * itemsize of a known dtype. Every tensor that
comes out of `decode` is a dense, contiguous CPU `torch.Tensor` of a plain dtype.
"""
import json
import math
import select
import socket
import struct
import time

import torch

MAGIC = b"GRD1"
FRAME = struct.Struct("<4sII")  # magic, header bytes, payload bytes
MAX_HEADER = 1 << 20            # JSON header bytes of one frame (structure, not data)
MAX_NODES = 200_000             # containers and leaves in one frame
MAX_DEPTH = 32                  # containers nested in one value
MAX_DIMS = 16
MAX_ELEMENTS = 1 << 40          # bound on a shape's product, every dimension counted as >= 1
DTYPES = {name: getattr(torch, name) for name in (
    "bool", "uint8", "int8", "int16", "int32", "int64", "float16", "bfloat16", "float32",
    "float64", "complex64", "complex128")}


class WireError(Exception):
    """A frame or value that cannot travel: one line, the submission's fault."""


class Closed(Exception):
    """The other end closed the channel (the worker died or exited)."""


class TimedOut(Exception):
    """No complete frame before the deadline."""


# ---------------------------------------------------------------------------------------
# Encoding (in the worker, and for inputs in the parent)
# ---------------------------------------------------------------------------------------

def encode(body, max_bytes: int) -> bytes:
    """One frame holding `body`: tensors, None/bool/int/float/str, dict, list and tuple."""
    chunks, state = [], {"bytes": 0, "nodes": 0}

    def walk(value, depth=0):
        state["nodes"] += 1
        if state["nodes"] > MAX_NODES:
            raise WireError(f"more than {MAX_NODES} values in one reply")
        if depth > MAX_DEPTH:
            raise WireError(f"a structure nested more than {MAX_DEPTH} deep")
        if type(value) is torch.Tensor:
            return tensor_node(value)
        if value is None or type(value) in (bool, int, str):
            return value
        if type(value) is float:
            return value if math.isfinite(value) else {"$f": repr(value)}
        if type(value) is dict:
            return {"$d": [[walk(k, depth + 1), walk(v, depth + 1)] for k, v in value.items()]}
        if type(value) is tuple:
            return {"$tu": [walk(v, depth + 1) for v in value]}
        if type(value) is list:
            return [walk(v, depth + 1) for v in value]
        raise WireError(f"a {type(value).__name__[:100]} is not plain tensors")

    def tensor_node(t):
        dtype = str(t.dtype).removeprefix("torch.")
        if dtype not in DTYPES:
            raise WireError(f"a tensor of dtype {t.dtype} is not plain tensors")
        if t.layout != torch.strided or t.is_quantized or t.is_nested or t.is_meta:
            raise WireError(f"a {t.layout} tensor is not plain tensors")
        nbytes = t.numel() * t.element_size()
        state["bytes"] += nbytes
        if state["bytes"] > max_bytes:
            raise WireError(f"outputs larger than {max_bytes >> 20} MB")
        flat = t.detach().resolve_conj().resolve_neg().to("cpu").contiguous().reshape(-1)
        chunks.append(flat.view(torch.uint8).numpy().tobytes() if nbytes else b"")
        return {"$t": len(chunks) - 1, "dtype": dtype, "shape": list(t.shape)}

    tree = walk(body)
    header = json.dumps({"tree": tree, "sizes": [len(c) for c in chunks]},
                        separators=(",", ":")).encode()
    if len(header) > MAX_HEADER:
        raise WireError(f"reply structure larger than {MAX_HEADER >> 10} KB")
    payload = b"".join(chunks)
    return FRAME.pack(MAGIC, len(header), len(payload)) + header + payload


# ---------------------------------------------------------------------------------------
# Decoding (in the parent): bounded, no code, no inflation
# ---------------------------------------------------------------------------------------

def decode(header: bytes, payload: bytearray):
    """The value of one frame, rebuilt from its JSON header and raw payload. Anything
    malformed, however it fails, is a WireError (the case's fault, never the grader's)."""
    try:
        return decode_checked(header, payload)
    except WireError:
        raise
    except Exception as exc:  # noqa: BLE001 - RecursionError, MemoryError, torch's own checks
        raise WireError(f"malformed reply ({type(exc).__name__})") from None


def json_depth(tree) -> int:
    """How deeply a parsed JSON value nests, measured without recursion."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if type(node) is list:
            stack += [(v, depth + 1) for v in node]
        elif type(node) is dict:
            stack += [(v, depth + 1) for v in node.values()]
    return deepest


def decode_checked(header: bytes, payload: bytearray):
    try:
        meta = json.loads(header.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise WireError(f"malformed reply header ({type(exc).__name__})") from None
    # A dict is three JSON levels ({"$d": [[k, v]]}): beyond that, refuse before walking.
    if json_depth(meta) > 3 * MAX_DEPTH + 4:
        raise WireError(f"a structure nested more than {MAX_DEPTH} deep")
    sizes = meta.get("sizes") if type(meta) is dict else None
    if type(sizes) is not list or not all(type(s) is int and s >= 0 for s in sizes) \
            or sum(sizes) != len(payload):
        raise WireError("malformed reply: tensor sizes do not add up")
    offsets = [0]
    for s in sizes:
        offsets.append(offsets[-1] + s)
    view = memoryview(payload)
    count = [0]

    def walk(node):
        count[0] += 1
        if count[0] > MAX_NODES:
            raise WireError(f"more than {MAX_NODES} values in one reply")
        if node is None or type(node) in (bool, int, str, float):
            return node
        if type(node) is list:
            return [walk(v) for v in node]
        if type(node) is not dict or len(node) not in (1, 3):
            raise WireError("malformed reply value")
        if "$t" in node:
            return tensor(node)
        if "$d" in node and type(node["$d"]) is list:
            pairs = [walk(p) for p in node["$d"]]
            if not all(type(p) is list and len(p) == 2 for p in pairs):
                raise WireError("malformed reply dict")
            try:
                return {k: v for k, v in pairs}
            except TypeError:
                raise WireError("malformed reply dict key") from None
        if "$tu" in node and type(node["$tu"]) is list:
            return tuple(walk(v) for v in node["$tu"])
        if "$f" in node and node["$f"] in ("nan", "inf", "-inf"):
            return float(node["$f"])
        raise WireError("malformed reply value")

    def tensor(node):
        index, dtype, shape = node.get("$t"), DTYPES.get(node.get("dtype")), node.get("shape")
        if type(index) is not int or not 0 <= index < len(sizes) or dtype is None:
            raise WireError("malformed reply tensor")
        if type(shape) is not list or len(shape) > MAX_DIMS or \
                not all(type(d) is int and 0 <= d <= MAX_ELEMENTS for d in shape):
            raise WireError("malformed reply tensor shape")
        if math.prod(max(d, 1) for d in shape) > MAX_ELEMENTS:  # e.g. [2**62, 2**62, 0]
            raise WireError("malformed reply tensor shape")
        numel = math.prod(shape)
        itemsize = torch.empty((), dtype=dtype).element_size()
        if numel * itemsize != sizes[index]:
            raise WireError("malformed reply: tensor bytes do not match its shape")
        if numel == 0:
            return torch.empty(shape, dtype=dtype)
        raw = view[offsets[index]:offsets[index + 1]]
        return torch.frombuffer(raw, dtype=torch.uint8).view(dtype).reshape(shape)

    return walk(meta.get("tree"))


def read_frame(sock: socket.socket, deadline: float, max_payload: int):
    """(header, payload) of the next frame, reading no more than the caps allow.

    Raises TimedOut at `deadline` (time.monotonic()), Closed at end of stream, WireError for
    a frame over the caps (whose bytes are never read)."""
    head = read_exactly(sock, FRAME.size, deadline)
    magic, header_size, payload_size = FRAME.unpack(head)
    if magic != MAGIC:
        raise WireError("malformed reply frame")
    if header_size > MAX_HEADER:
        raise WireError(f"reply structure larger than {MAX_HEADER >> 10} KB")
    if payload_size > max_payload:
        raise WireError(f"outputs larger than {max_payload >> 20} MB")
    header = bytes(read_exactly(sock, header_size, deadline))
    return header, read_exactly(sock, payload_size, deadline)


def read_exactly(sock: socket.socket, size: int, deadline: float) -> bytearray:
    buffer, view, got = bytearray(size), None, 0
    view = memoryview(buffer)
    while got < size:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([sock], [], [], left)[0]:
            raise TimedOut()
        n = sock.recv_into(view[got:], min(size - got, 1 << 20))
        if n == 0:
            raise Closed()
        got += n
    return buffer
