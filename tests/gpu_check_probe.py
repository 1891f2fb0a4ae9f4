"""The probe that tests/gpu_check.py sends into a sandboxed worker (as its test-only suite).

The worker loads this file in place of the assignment's suite: `probed_suite(assignment)`
keeps every case of the real suite and adds a probe case, which reports from inside the sandbox
what the GPU check must see there. Run after the assignment's cases in the same worker, it
tells whether they touched CUDA on a CPU run. Everything comes back as tensors (strings as
uint8 bytes), the only thing a worker may send.

`probed_suite` also counts calls of `Tensor.cuda` and `Module.cuda` in the worker: code
that moves things with `.cuda()` instead of to the device it was given.
"""
import glob

import torch
import torch.nn.functional as F

from grader.cases import Case, Suite
from grader.suites import load_suite

CUDA_CALLS = []  # one entry per `.cuda()` call made in this worker


def counting(method, name):
    """`method`, recording each call in CUDA_CALLS first."""
    def cuda(self, *args, **kwargs):
        CUDA_CALLS.append(name)
        return method(self, *args, **kwargs)
    return cuda


def text(value: str) -> torch.Tensor:
    """A string as a uint8 tensor of its UTF-8 bytes."""
    return torch.tensor(list(value.encode()), dtype=torch.uint8)


def scaled(got: torch.Tensor, expected: torch.Tensor) -> float:
    got, expected = got.cpu().double(), expected.double()
    return ((got - expected).abs().max() / expected.abs().max()).item()


def float32_errors(device: torch.device) -> tuple[float, float]:
    """Scaled errors of a float32 matmul (256 x 512 x 256) and convolution on `device`
    against float64 on the CPU: about 1e-7 in float32, 1e-4 or more when TF32 is on."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(256, 512, generator=g), torch.randn(512, 256, generator=g)
    matmul = scaled(a.to(device) @ b.to(device), a.double() @ b.double())
    x, w = torch.randn(8, 64, 16, 16, generator=g), torch.randn(64, 64, 3, 3, generator=g)
    conv = scaled(F.conv2d(x.to(device), w.to(device), padding=1),
                  F.conv2d(x.double(), w.double(), padding=1))
    return matmul, conv


def loaded_libcuda() -> str:
    """The path of the driver's libcuda mapped into this process ('' when none is)."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            if "libcuda.so" in line:
                return line.split()[-1]
    return ""


def probe(module, inputs, device):
    """What the sandbox looks like from inside, after the cases this worker ran before it."""
    initialized = torch.cuda.is_initialized()  # read first: the lines below start CUDA
    matmul, conv = float32_errors(device)
    precision = getattr(torch.backends.cuda.matmul, "fp32_precision", "")
    return {
        "cuda_initialized_before": torch.tensor(initialized),
        "cuda_calls": torch.tensor(len(CUDA_CALLS)),
        "tf32_flags": torch.tensor([torch.backends.cuda.matmul.allow_tf32,
                                    torch.backends.cudnn.allow_tf32]),
        "matmul_fp32_precision": text(str(precision)),
        "float32_errors": torch.tensor([matmul, conv], dtype=torch.float64),
        "cuda_available": torch.tensor(torch.cuda.is_available()),
        "device_nodes": text("\n".join(sorted(glob.glob("/dev/nvidia*")))),
        "libcuda": text(loaded_libcuda()),
    }


def probed_suite(assignment: str, probe_name: str) -> Suite:
    """The assignment's suite with the probe added last, as `probe_name`; from now on,
    this process counts its `.cuda()` calls."""
    torch.Tensor.cuda = counting(torch.Tensor.cuda, "Tensor.cuda")
    torch.nn.Module.cuda = counting(torch.nn.Module.cuda, "Module.cuda")
    suite = Suite(assignment)
    for case in load_suite(assignment):
        suite.add(case)
    suite.add(Case(probe_name, 0, inputs=lambda g: {}, call=probe, time_limit=120.0))
    return suite
