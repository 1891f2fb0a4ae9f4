"""Seeding, devices, relative error and loading an assignment module from a file."""
import importlib.util
import os
import random
import sys
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent


def seed_everything(seed: int) -> None:
    """Seed Python's `random`, NumPy and torch (CPU and CUDA) with one number."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device(device: str = "auto") -> torch.device:
    """`auto` picks CUDA when a GPU is present, else the CPU; `cpu`/`cuda` force one."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but torch sees no GPU on this machine")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}: use auto, cpu or cuda")
    return torch.device(device)


def rel_error(x, y) -> float:
    """max |x - y| / max(1e-8, |x| + |y|), element-wise, computed on the CPU in float64.

    Symmetric, at most 1, and 0 only when the tensors are equal. Integer tensors work too.
    """
    x = torch.as_tensor(x).detach().to("cpu", torch.float64)
    y = torch.as_tensor(y).detach().to("cpu", torch.float64)
    if x.numel() == 0 and y.numel() == 0:
        return 0.0
    return ((x - y).abs() / (x.abs() + y.abs()).clamp_min(1e-8)).max().item()


def load_assignment(name: str, impl: str | os.PathLike | None = None):
    """Import `<impl>/<name>.py` as the module `name` and return it.

    `impl` defaults to the environment variable DLCOURSE_IMPL, else `assignments/`, so
    the same notebook runs on your code and, in the course's own tests, on the reference.
    A fresh copy is imported on every call, so edits to your file are picked up.
    """
    impl = Path(impl or os.environ.get("DLCOURSE_IMPL") or REPO_ROOT / "assignments")
    if not impl.is_absolute():
        impl = REPO_ROOT / impl
    path = impl / f"{name}.py"
    if not path.is_file():
        raise FileNotFoundError(f"no module {path}: is the assignment name right?")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look modules up by name
    spec.loader.exec_module(module)
    return module
