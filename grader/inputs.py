"""Shared by the suites: building case inputs, and loading weights into student modules."""
import math

import torch
from torch import nn


def randn(g: torch.Generator, *shape, scale: float = 1.0, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=g, dtype=dtype) * scale


def linspace(lo: float, hi: float, *shape, dtype=torch.float32) -> torch.Tensor:
    """The source homework's deterministic inputs: evenly spaced values, reshaped."""
    return torch.linspace(lo, hi, math.prod(shape), dtype=dtype).reshape(*shape)


def load_state(module: nn.Module, state: dict, device, dtype=None) -> nn.Module:
    """Load `state` into a freshly built student module, in eval mode on `device`.

    Parameter names are part of the assignment's contract: when they differ, one line
    names the missing and unexpected ones (torch's own message spans many lines).
    """
    have = set(module.state_dict())
    missing, unexpected = sorted(set(state) - have), sorted(have - set(state))
    if missing or unexpected:
        raise ValueError(f"{type(module).__name__} parameter names differ from the assignment's: "
                         f"missing {missing[:4]}, unexpected {unexpected[:4]}")
    if dtype is not None:
        module = module.to(dtype)
    module.load_state_dict(state)
    return module.to(device).eval()
