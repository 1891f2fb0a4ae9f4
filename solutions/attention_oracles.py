"""Expected values of the `attention` cases that do not come from the reference: torch's
own attention for the outputs, and the weights written out from the formula.

Instructor side only: used by the fixture generator and the audit, never shipped to
students and never importable inside the sandbox.
"""
import torch
import torch.nn.functional as F

from grader.suites.attention import weights_of


def attention_expected(x):
    """torch's own attention for the outputs; the weights written out again."""
    out = {}
    for name, (q, k, v) in x.items():
        out[name] = F.scaled_dot_product_attention(q, k, v)
        out[weights_of(name)] = torch.softmax(q @ k.mT * q.shape[-1] ** -0.5, dim=-1)
    return out


def causal_expected(x):
    out = {}
    for name, (q, k, v) in x.items():
        out[name] = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        L = q.shape[1]
        scores = (q @ k.mT * q.shape[-1] ** -0.5).masked_fill(
            torch.ones(L, L, dtype=torch.bool).triu(1), float("-inf"))
        out[weights_of(name)] = torch.softmax(scores, dim=-1)
    return out


ORACLES = {"attention/vs_torch": attention_expected, "causal/attention": causal_expected}
