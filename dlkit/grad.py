"""Numeric gradients, for checking backward passes written by hand.

    dx_num = compute_numeric_gradient(lambda x: f(x, w), x, dout)
    rel_error(dx_num, dx)   # a correct backward gives ~1e-8 or less in float64

Work in float64: with float32 the rounding error of the differences swamps the check.
"""
import torch

from dlkit.utils import rel_error  # noqa: F401 - re-exported: checks usually need both


def compute_numeric_gradient(f, x: torch.Tensor, dLdf: torch.Tensor | None = None,
                             h: float = 1e-7) -> torch.Tensor:
    """The gradient of L = sum(f(x) * dLdf) with respect to x, by centred differences.

    f: a function of one tensor shaped like `x`, returning a tensor (any shape).
    dLdf: the upstream gradient, shaped like f(x); None means ones (L = f(x).sum()).
    h: the step. Each element costs two calls of f: keep x small.

    Returns a float64 tensor shaped like `x`. `x` itself is left unchanged: f receives a
    perturbed float64 copy.
    """
    x = x.detach().to(torch.float64).clone()
    grad = torch.zeros_like(x)
    flat, flat_grad = x.view(-1), grad.view(-1)
    with torch.no_grad():
        for i in range(flat.numel()):
            old = flat[i].item()
            flat[i] = old + h
            plus = f(x).detach().to(torch.float64)
            flat[i] = old - h
            minus = f(x).detach().to(torch.float64)
            flat[i] = old
            upstream = torch.ones_like(plus) if dLdf is None else dLdf.to(plus)
            flat_grad[i] = ((plus - minus) * upstream).sum() / (2 * h)
    return grad
