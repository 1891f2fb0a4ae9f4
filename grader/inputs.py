"""Shared by the suites: building case inputs, and loading weights into student modules."""
import contextlib
import math

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from grader.cases import input_tensors


def randn(g: torch.Generator, *shape, scale: float = 1.0, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=g, dtype=dtype) * scale


def linspace(lo: float, hi: float, *shape, dtype=torch.float32) -> torch.Tensor:
    """The source homework's deterministic inputs: evenly spaced values, reshaped."""
    return torch.linspace(lo, hi, math.prod(shape), dtype=dtype).reshape(*shape)


def load_state(module: nn.Module, state: dict, device, dtype=None) -> nn.Module:
    """Load `state` into a freshly built student module, in eval mode on `device`.

    Parameter names and shapes are part of the assignment's contract: when they differ, one
    line names the missing and unexpected keys, or the first key whose shape differs
    (torch's own message spans many lines, and only its first would reach the report).
    """
    have = set(module.state_dict())
    missing, unexpected = sorted(set(state) - have), sorted(have - set(state))
    if missing or unexpected:
        raise ValueError(f"{type(module).__name__} parameter names differ from the assignment's: "
                         f"missing {missing[:4]}, unexpected {unexpected[:4]}")
    for key, value in module.state_dict().items():
        if tuple(value.shape) != tuple(state[key].shape):
            raise ValueError(f"{type(module).__name__}'s {key} has shape {tuple(value.shape)}, "
                             f"the assignment's is {tuple(state[key].shape)}")
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


def value_and_gradients(loss, *tensors) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(loss(*copies), the gradient of that value with respect to each copy): the copies
    require gradients, so a loss that trains right gives autograd's gradient of its formula
    (compared with the reference's); one that cuts the graph gives zeros."""
    copies = [t.detach().clone().requires_grad_(True) for t in tensors]
    value = loss(*copies)
    if not (isinstance(value, torch.Tensor) and value.requires_grad):
        return value, [torch.zeros_like(t) for t in copies]
    grads = torch.autograd.grad(value.sum(), copies, allow_unused=True)
    return value.detach(), [torch.zeros_like(t) if g is None else g for t, g in zip(copies, grads)]


def attempt(run, shape):
    """run(), or int64 -1s of the expected shape if it raised (not NotImplementedError): a
    crash on one row (a batch of one, a prompt near max_N) then costs that output only, and
    the known mistakes that crash there can be named."""
    try:
        return run()
    except NotImplementedError:
        raise
    except Exception:  # noqa: BLE001 - judged as wrong values, named when known
        return torch.full(shape, -1, dtype=torch.long)


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


# ---------------------------------------------------------------------------------------
# Device placement without a GPU: the code runs on the meta device, and a CPU tensor that
# meets one of its tensors (a mask, labels or positions made without `device=`) is named
# ---------------------------------------------------------------------------------------

ELSEWHERE = torch.device("meta")  # a device other than the CPU that every machine has
DEVICE_MISTAKE = "made a tensor on the CPU while its inputs are on another device"
# What meta tensors cannot do (they hold no values): a step that reads values (`.item()`,
# `bool(t)`, `.tolist()`, `nonzero`, `masked_select`) ends the check there, with nothing
# found before it.
NO_VALUES = ("cannot be called on meta tensors", "Cannot copy out of meta tensor",
             "data-dependent", "raises unimplemented", "no data", "with Meta tensors")


# torch's own complaints about mixed devices, raised by composite operations (take_along_dim)
# before any dispatched operation sees both tensors.
MIXED_DEVICES = ("Expected all tensors to be on the same device",
                 "but got tensor with cpu Device")


class WrongDevice(RuntimeError):
    """A tensor on the CPU met the inputs' device inside the code under test."""


class DeviceWatch(TorchDispatchMode):
    """Every torch operation run under it: one that mixes a tensor on ELSEWHERE with a CPU
    tensor that has dimensions (CPU scalars mix with any device) raises WrongDevice."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        if any(t.device == ELSEWHERE for t in tensors):
            cpu = next((t for t in tensors if t.device.type == "cpu" and t.dim() > 0), None)
            if cpu is not None:
                raise WrongDevice(
                    f"{DEVICE_MISTAKE}: a CPU tensor of shape {tuple(cpu.shape)} met one on "
                    f"{ELSEWHERE.type} in {func.__name__.split('.')[0]}; make new tensors "
                    f"with device=x.device and move given ones with .to(x.device)")
        return func(*args, **kwargs)


def elsewhere(value):
    """Tensors (in dicts, lists, tuples) moved to ELSEWHERE, keeping their dtypes."""
    if isinstance(value, torch.Tensor):
        return value.to(ELSEWHERE)
    if isinstance(value, dict):
        return {k: elsewhere(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(elsewhere(v) for v in value)
    return value


def device_checked(*runs) -> dict:
    """{"devices_checked": True} once each of `runs` (each builds modules and inputs on
    ELSEWHERE and calls the student's code on them) ran without mixing devices and returned
    only tensors on ELSEWHERE; WrongDevice otherwise. A step that needs values (or an
    operation the meta device does not have) ends that run's check early, not the others'."""
    for run in runs:
        outputs = None
        try:
            with DeviceWatch():
                outputs = run()
        except (NotImplementedError, RuntimeError) as exc:
            if not isinstance(exc, WrongDevice) and any(t in str(exc) for t in MIXED_DEVICES):
                raise WrongDevice(f"{DEVICE_MISTAKE}: {str(exc).splitlines()[0]}") from None
            if isinstance(exc, WrongDevice) or not any(text in str(exc) for text in NO_VALUES):
                raise  # a device mistake, the skeleton's "not implemented yet", a real error
        for where, tensor in input_tensors(outputs, "output"):
            if tensor.device != ELSEWHERE and tensor.dim() > 0:
                raise WrongDevice(f"{DEVICE_MISTAKE}: it returned {where} on "
                                  f"{tensor.device.type}; outputs stay on the inputs' device")
    return {"devices_checked": torch.tensor(True)}
