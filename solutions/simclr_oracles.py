"""Expected values of the `simclr` loss cases, from the loss's formula written here
independently of the reference (a cross-entropy over the similarity matrix with its diagonal
removed), the way the source homework's `simclr_sanity_check.key` held values computed once.

Instructor side only: used by the fixture generator and the audit, never shipped to
students and never importable inside the sandbox.
"""
import math

import torch
import torch.nn.functional as F

from grader.suites.simclr import TAUS, loss_gradients


def cosine_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of matching rows (or of two vectors): (..., D) -> (...)."""
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))


def similarity_matrix(out: torch.Tensor) -> torch.Tensor:
    """(2N, D) -> (2N, 2N) cosine similarities of every pair of rows."""
    unit = out / out.norm(dim=1, keepdim=True)
    return unit @ unit.T


def nt_xent(left: torch.Tensor, right: torch.Tensor, tau: float) -> torch.Tensor:
    """L = mean over the 2N views i of -log softmax_{k != i}(sim(z_i, z_k) / tau)[positive]."""
    N = len(left)
    logits = similarity_matrix(torch.cat([left, right])) / tau
    logits = logits.masked_fill(torch.eye(2 * N, dtype=torch.bool), -math.inf)
    positives = torch.cat([torch.arange(N, 2 * N), torch.arange(N)])
    return F.cross_entropy(logits, positives)


def identical_views_loss(N: int, tau: float) -> float:
    """The loss for identical views of N mutually orthogonal vectors: every view's positive
    has similarity 1 and its other 2N - 2 similarities are 0."""
    return math.log(1 + (2 * N - 2) * math.exp(-1 / tau))


def sim_expected(x):
    left, right = x["left"], x["right"]
    return {"pair_0": cosine_rows(left[0], right[0]), "pair_1": cosine_rows(left[1], right[1]),
            "rescaled": cosine_rows(left[2], right[2]),
            "same_direction": cosine_rows(left[3], left[3])}


def loss_expected(x):
    out = {name: nt_xent(x["left"], x["right"], tau) for name, tau in TAUS.items()}
    out["one_and_two_pairs"] = torch.stack([nt_xent(x["one_left"], x["one_right"], 0.5),
                                            nt_xent(x["two_left"], x["two_right"], 0.5)])
    out["gradients"] = loss_gradients(nt_xent, x)  # autograd's, through the formula
    return out


def positives_expected(x):
    return {"pairs": cosine_rows(x["left"], x["right"])[:, None],
            "one_pair": {"values": cosine_rows(x["one_left"], x["one_right"])[:, None],
                         "keeps_shape": torch.tensor(True)}}


def matrix_expected(x):
    return {"matrix": similarity_matrix(torch.cat([x["left"], x["right"]])),
            "one_pair": similarity_matrix(torch.cat([x["one_left"], x["one_right"]])),
            "input_itself": similarity_matrix(x["left"])}


def vectorized_expected(x):
    out = loss_expected(x)
    out["no_device_argument"] = out["tau_0_5"]
    return out


def properties_expected(x):
    """Every output is the loss of the same pairs (reordered, swapped, or with another
    diagonal), except the identical views of orthogonal vectors, known in closed form."""
    loss = nt_xent(x["left"], x["right"], 0.5)
    return {"loss": loss, "pairs_permuted": loss, "views_swapped": loss,
            "identical_views": torch.tensor(identical_views_loss(len(x["orthogonal"]), 0.5),
                                            dtype=loss.dtype),
            "diagonal_changed": loss}


ORACLES = {
    "loss/sim": sim_expected,
    "loss/naive": loss_expected,
    "loss/sim_positive_pairs": positives_expected,
    "loss/sim_matrix": matrix_expected,
    "loss/vectorized": vectorized_expected,
    "loss/properties": properties_expected,
}
