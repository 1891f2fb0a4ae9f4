"""Shared by the suites: building case inputs, and loading weights into student modules."""
import contextlib
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


def load_trained(model: nn.Module, weights: dict, device=None) -> nn.Module:
    """The grader's own `model` with a student's trained `weights` (strict), in eval mode.

    Used by training cases' `evaluate`, which never imports the student's module: when the
    weights do not fit, one line names the missing and unexpected keys, or the first key
    whose shape differs, instead of torch's many-line message."""
    want, what = model.state_dict(), type(model).__name__
    if not isinstance(weights, dict):
        raise ValueError(f"training must return the model's state_dict, got "
                         f"{type(weights).__name__}")
    missing, unexpected = sorted(set(want) - set(weights)), sorted(set(weights) - set(want))
    if missing or unexpected:
        raise ValueError(f"the trained weights do not fit the assignment's {what}: "
                         f"missing {missing[:4]}, unexpected {unexpected[:4]}")
    for key, value in want.items():
        got = weights[key]
        if not isinstance(got, torch.Tensor) or got.shape != value.shape:
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            raise ValueError(f"the trained weight {key} has shape {shape}, the assignment's "
                             f"{what} needs {tuple(value.shape)}")
    model.load_state_dict(weights, strict=True)
    return (model.to(device) if device is not None else model).eval()


def trained_state(model: nn.Module) -> dict:
    """What a training case returns from the student's sandbox: detached CPU weights."""
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


@contextlib.contextmanager
def torch_threads(n: int):
    """Run on `n` torch threads (0: leave as is). Small models gain nothing from a second
    thread, and on a busy machine (parallel grading) OpenMP threads slow each other down."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def on_one_thread(case):
    """The case with its `call` run on one torch thread: the same reduction order on every
    machine keeps fixtures reproducible, and tiny ops are fastest that way."""
    call = case.call

    def single_threaded(m, x, device):
        with torch_threads(1):
            return call(m, x, device)
    case.call = single_threaded
    return case


class PlainSGD:
    """p -= lr * p.grad with the optimiser interface training loops use, for cases that take
    optimiser steps in the sandbox (torch.optim's first construction in a fresh process
    imports torch._dynamo: seconds spent on nothing here). Frozen parameters are skipped."""

    def __init__(self, params, lr: float):
        self.params, self.lr = [p for p in params if p.requires_grad], lr

    def zero_grad(self, set_to_none: bool = True):
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self):
        for p in self.params:
            if p.grad is not None:
                p -= self.lr * p.grad
