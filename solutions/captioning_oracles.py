"""Expected values of the `captioning` cases that do not come from the reference: the source
homework's printed values, the formulas written out again (RNN and LSTM steps, dot-product
attention, greedy sampling), autograd, and numeric gradients (`dlkit.grad`) in float64.

Instructor side only: used by the fixture generator and the audit (and, through
`grader.authoring.oracle_module`, by the sampling cases' input builder, which runs in the
instructor's process), never shipped to students and never importable inside the sandbox.
"""
import functools
import math

import torch
import torch.nn.functional as F

from dlkit import captions as data
from dlkit.grad import compute_numeric_gradient
from grader.suites.captioning import (END, F64, GRAD_NAMES, NULL, NUMERIC_STEP, SAMPLE_LENGTH,
                                      SMALL, START, sample_state, source)


def rnn_step(x, h, Wx, Wh, b):
    return torch.tanh(x @ Wx + h @ Wh + b)


def rnn_sequence(x, h, Wx, Wh, b):
    states = []
    for t in range(x.shape[1]):
        h = rnn_step(x[:, t], h, Wx, Wh, b)
        states.append(h)
    return torch.stack(states, dim=1)


def lstm_step(x, h, c, Wx, Wh, b, attn=None, Wattn=None):
    a = x @ Wx + h @ Wh + b + (0 if attn is None else attn @ Wattn)
    H = h.shape[1]
    i, f, o = (torch.sigmoid(a[:, k * H:(k + 1) * H]) for k in range(3))
    g = torch.tanh(a[:, 3 * H:])
    c = f * c + i * g
    return o * torch.tanh(c), c


def attention(prev_h, A):
    N, H = prev_h.shape
    flat = A.reshape(N, H, -1)                                           # (N, H, 16)
    weights = torch.softmax(torch.einsum("nh,nhk->nk", prev_h, flat) / math.sqrt(H), dim=1)
    return torch.einsum("nhk,nk->nh", flat, weights), weights.reshape(N, *A.shape[2:])


def lstm_sequence(x, h, Wx, Wh, b, A=None, Wattn=None):
    c = h if A is not None else torch.zeros_like(h)
    states = []
    for t in range(x.shape[1]):
        attn = attention(h, A)[0] if A is not None else None
        h, c = lstm_step(x[:, t], h, c, Wx, Wh, b, attn, Wattn)
        states.append(h)
    return torch.stack(states, dim=1)





def numeric_grads(forward, args, upstream):
    """Numeric gradients of sum(forward(*args) * upstream) for every argument."""
    grads = {}
    for i, name in enumerate(GRAD_NAMES):
        def f(v, i=i):
            return forward(*args[:i], v, *args[i + 1:])
        grads[name] = compute_numeric_gradient(f, args[i], upstream, h=NUMERIC_STEP)
    return grads


def autograd_grads(forward, args, upstream):
    leaves = [a.clone().requires_grad_(True) for a in args]
    forward(*leaves).backward(upstream)
    return {name: leaf.grad for name, leaf in zip(GRAD_NAMES, leaves)}


def rnn_module_expected(x):
    s = x["state"]
    return {"forward": rnn_sequence(x["x"], x["h0"], s["Wx"], s["Wh"], s["b"]),
            "step": rnn_step(x["x"][:, 0], x["h0"], s["Wx"], s["Wh"], s["b"])}


def loss_expected(x):
    def loss(scores, y, ignore):
        return F.cross_entropy(scores.reshape(-1, scores.shape[-1]), y.reshape(-1),
                               ignore_index=ignore, reduction="sum") / scores.shape[0]
    scores = x["x"].clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(loss(scores, x["y"], 0), scores)  # autograd of the formula
    return {"ignore_null": loss(x["x"], x["y"], 0), "ignore_none": loss(x["x"], x["y"], -100),
            "gradient": gradient,
            "ignore_3": loss(x["x"], x["y"], 3),
            "near_uniform": loss(x["small_x"], x["small_y"], 0),
            "single": loss(x["single_x"], x["single_y"], 0)}


def sample_expected(x):
    state = sample_state(x["cell"], int(x["seed"]))
    out = reference_sample(x["cell"], state, x["images"], SAMPLE_LENGTH)
    single = reference_sample(x["cell"], state, x["images"][:1], SAMPLE_LENGTH)
    out.update({f"single_{k}": v for k, v in single.items()})
    return out


def lstm_step_expected(x, prefix):
    out = {"source_h": source(prefix + "_h"), "source_c": source(prefix + "_c")}
    for key in ("random", "single"):
        r = x[key]
        w = r["w"]
        out[key + "_h"], out[key + "_c"] = lstm_step(r["x"], r["h"], r["c"], w["Wx"], w["Wh"],
                                                     w["b"], r.get("attn"), w.get("Wattn"))
    return out


def lstm_forward_expected(x, key):
    out = {"source": source(key)}
    for row in ("random", "single"):
        r = x[row]
        w = r["w"]
        if "A" in r:
            out[row] = lstm_sequence(r["x"], r["A"].mean(dim=(2, 3)), w["Wx"], w["Wh"], w["b"],
                                     r["A"], w["Wattn"])
        else:
            out[row] = lstm_sequence(r["x"], r["h0"], w["Wx"], w["Wh"], w["b"])
    return out


def attention_expected(x):
    out = {"source": source("attn"), "source_weights": source("attn_weights")}
    for key in ("random", "single"):
        out[key], out[key + "_weights"] = attention(*x[key])
    return out


@functools.cache
def small_encoder():
    """One ImageEncoder of SMALL's sizes, in float64: the sampling cases load weights into it."""
    return data.ImageEncoder(SMALL["input_dim"], SMALL["encoder_width"]).to(F64)


@torch.no_grad()
def reference_sample(cell: str, state: dict, images: torch.Tensor, max_length: int,
                     carry_cell: bool = True) -> dict:
    """Greedy decoding written out with this file's formulas (independent of the solution).

    carry_cell=False restarts the cell state from c0 at every step: only used to choose
    inputs whose captions depend on the cell state carried between steps."""
    encoder = small_encoder()
    encoder.load_state_dict({k.split(".", 1)[1]: v for k, v in state.items()
                             if k.startswith("image_encoder.")})
    features = encoder(images)                                           # (N, C, 4, 4)
    Wp, bp = state["feature_proj.weight"], state["feature_proj.bias"]
    w = {k.split(".", 1)[1]: v for k, v in state.items() if k.startswith("rnn.")}
    if cell == "attn":
        A = (features.permute(0, 2, 3, 1) @ Wp.T + bp).permute(0, 3, 1, 2)  # (N, H, 4, 4)
        h = c = A.mean(dim=(2, 3))
    else:
        h = features.mean(dim=(2, 3)) @ Wp.T + bp
        c = torch.zeros_like(h)
    c0 = c
    word = torch.full((len(images),), START)
    words, weights = [], []
    for _ in range(max_length):
        c = c if carry_cell else c0
        x = state["word_embedding.W_embed"][word]
        if cell == "rnn":
            h = rnn_step(x, h, w["Wx"], w["Wh"], w["b"])
        elif cell == "lstm":
            h, c = lstm_step(x, h, c, w["Wx"], w["Wh"], w["b"])
        else:
            attn, attn_weights = attention(h, A)
            weights.append(attn_weights)
            h, c = lstm_step(x, h, c, w["Wx"], w["Wh"], w["b"], attn, w["Wattn"])
        word = (h @ state["output.weight"].T + state["output.bias"]).argmax(dim=1)
        words.append(word)
    captions = torch.stack(words, dim=1)
    is_end = captions.eq(END).long()
    captions = captions.masked_fill(is_end.cumsum(dim=1) - is_end > 0, NULL)
    out = {"captions": captions}
    if cell == "attn":
        out["attn_weights"] = torch.stack(weights, dim=1)
    return out


ORACLES = {
    "rnn/step_forward": lambda x: {"source": source("rnn_step_forward"),
                                   "random": rnn_step(*x["random"]),
                                   "single": rnn_step(*x["single"])},
    "rnn/step_backward": lambda x: numeric_grads(rnn_step, x["args"], x["upstream"]),
    "rnn/forward": lambda x: {"source": source("rnn_forward"),
                              "random": rnn_sequence(*x["random"]),
                              "single": rnn_sequence(*x["single"])},
    "rnn/backward": lambda x: numeric_grads(rnn_sequence, x["args"], x["upstream"]),
    "rnn/backward_vs_autograd": lambda x: autograd_grads(rnn_sequence, x["args"], x["upstream"]),
    "rnn/module": rnn_module_expected,
    "embedding/lookup": lambda x: {"source": source("word_embedding"),
                                   **{key: x[key][1][x[key][0]]  # rows of the table
                                      for key in ("random", "one_per_caption", "three_dims")}},
    "loss/temporal_softmax": loss_expected,
    **{f"model/sample_{cell}": sample_expected for cell in ("rnn", "lstm", "attn")},
    "lstm/step_forward": lambda x: lstm_step_expected(x, "lstm_step"),
    "lstm/forward": lambda x: lstm_forward_expected(x, "lstm_forward"),
    "attention/dot_product": attention_expected,
    "attention/lstm_step_forward": lambda x: lstm_step_expected(x, "attn_lstm_step"),
    "attention/lstm_forward": lambda x: lstm_forward_expected(x, "attn_lstm_forward"),
}
