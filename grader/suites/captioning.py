"""The graded cases of the `captioning` assignment.

Where the source homework printed expected values for inputs built with `torch.linspace`,
those values are the expected outputs here (`SOURCE`, carried to 8 decimals, hence the 1e-6
tolerance). Every other expected value comes from code that does not share the student's
code path, in `solutions/captioning_oracles.py` (instructor side only): the formulas
written out again, autograd, and numeric gradients (`dlkit.grad`) in float64. Model-level
cases (`CaptioningRNN`) take the reference solution's outputs, as in the other suites.

Numeric cases run in float64 throughout (inputs, weights and models), the source
homework's way for hand-written backward passes. The tolerance policy (`python -m grader
audit captioning` measures both sides): a correct implementation, however it is written
(see solutions/captioning_equivalents.py), lands within ~1e-12 of the values computed here,
within ~1e-8 of the source's printed ones (8 decimals, hence SOURCE_TOL = 1e-6), and within
~1e-7 with a float32 constant (the attention scale as `torch.sqrt(torch.tensor(H,
dtype=torch.float32))`, an equivalent); every known mistake moves an output by 1e-2 of its
scale or more. TOL = 1e-5 sits 100x above the correct side and 1000x below the mistakes.
Greedy sampling with attention feeds its weights back for 12 steps, which amplifies that
float32 constant to ~1e-4 of the weights' scale, while the scale by the grid's side moves
them by ~1e-1 on some scenes without changing a caption: SAMPLE_TOL = 3e-3 sits about 30x
from both (100x on both sides is not possible there). The losses are also judged by their
gradients (autograd's, through the student's loss, against the reference's): a loss cut
from the graph has the right value and trains nothing. `device/meta` runs every part on the meta
device, where a tensor made on the CPU is named. Rows with a batch of one, non-default sizes
(H differs from D and from the grid's side 4), an ignore_index other than <NULL> (and None),
and sampled captions that run many steps keep the known mistakes of
solutions/captioning_mutants.py from passing.

Training cases (CPU profile, measured on the 2-core build machine with the reference; see
`tests/bench_captioning.py`): three "overfit 50 scenes" loss targets and one held-out
exact-caption accuracy for the attention model. The student's process trains on one torch
thread for a fixed number of steps, judged by its CPU seconds (`cpu_time`), and returns the
weights; the loss and the held-out captions are computed by
the reference code (`evaluate`), on scenes whose seed the student's process never gets.
"""
import math
import zlib
from functools import partial

import torch

from dlkit import captions as data
from grader import inputs, policy
from grader.cases import Case, Property, Suite
from grader.inputs import (ELSEWHERE, attempt, device_checked, elsewhere, load_state,
                           trained_state, value_and_gradients)

suite = Suite("captioning")

# The library-shortcut policy (instructors: edit here). Per part, the library calls that would
# do its work; a case graded on that part loses its points when the part uses one of them
# (grader/policy.py). The part's docstring in solutions/captioning.py says what is off limits.
suite.ban("rnn_step_forward", policy.RECURRENT, cases=["rnn/step_forward", "rnn/module"])
suite.ban("rnn_forward", policy.RECURRENT, cases=["rnn/forward", "rnn/module"])
suite.ban("rnn_step_backward", policy.AUTOGRAD, cases=["rnn/step_backward"])
suite.ban("rnn_backward", policy.AUTOGRAD, cases=["rnn/backward", "rnn/backward_vs_autograd"])
suite.ban("WordEmbedding.forward", policy.EMBEDDING, cases=["embedding/"])
suite.ban("LSTM", policy.RECURRENT, cases=["lstm/"])
suite.ban("dot_product_attention", policy.ATTENTION, cases=["attention/dot_product"])
suite.ban("AttentionLSTM", policy.RECURRENT,
          cases=["attention/lstm_step_forward", "attention/lstm_forward"])

# Later parts run the student's earlier ones: their failures name the part to fix first.
suite.builds_on(["rnn/forward", "rnn/backward", "rnn/module"], "rnn_step_forward",
                ["rnn/step_forward"])
suite.builds_on(["rnn/backward", "rnn/backward_vs_autograd"], "rnn_step_backward",
                ["rnn/step_backward"])
suite.builds_on(["rnn/backward", "rnn/module"], "rnn_forward", ["rnn/forward"])
suite.builds_on(["model/", "device/", "train/"], "WordEmbedding", ["embedding/lookup"])
suite.builds_on(["model/forward_rnn", "model/forward_lstm", "model/forward_attn", "device/",
                 "train/"], "temporal_softmax_loss",
                ["loss/temporal_softmax"])
suite.builds_on(["model/forward_rnn", "model/sample_rnn", "train/overfit_rnn"], "RNN",
                ["rnn/module"])
suite.builds_on(["lstm/forward"], "LSTM.step_forward", ["lstm/step_forward"])
suite.builds_on(["model/forward_lstm", "model/sample_lstm", "train/overfit_lstm"], "LSTM",
                ["lstm/"])
suite.builds_on(["attention/lstm_forward", "model/forward_attn", "model/sample_attn",
                 "train/overfit_attn", "train/heldout_attn", "device/"],
                "dot_product_attention", ["attention/dot_product"])
suite.builds_on(["attention/lstm_forward"], "AttentionLSTM.step_forward",
                ["attention/lstm_step_forward"])
suite.builds_on(["model/forward_attn", "model/sample_attn", "train/overfit_attn",
                 "train/heldout_attn"], "AttentionLSTM",
                ["attention/lstm_step_forward", "attention/lstm_forward"])
suite.builds_on(["train/overfit_rnn"], "CaptioningRNN", ["model/forward_rnn"])
suite.builds_on(["train/overfit_lstm"], "CaptioningRNN", ["model/forward_lstm"])
suite.builds_on(["train/overfit_attn", "train/heldout_attn"], "CaptioningRNN",
                ["model/forward_attn", "model/sample_attn"])

F64 = torch.float64
randn = partial(inputs.randn, dtype=F64)  # every numeric check runs in float64
TOL = 1e-5          # float64 cases, float32 constants allowed (see the module docstring)
SAMPLE_TOL = 3e-3   # attention weights fed back through 12 greedy steps (module docstring)
linspace = partial(inputs.linspace, dtype=F64)

# ---------------------------------------------------------------------------------------
# The source homework's expected values (inputs: see the *_inputs functions below)
# ---------------------------------------------------------------------------------------

SOURCE = {
    "rnn_step_forward": [[-0.58172089, -0.50182032, -0.41232771, -0.31410098],
                         [0.66854692, 0.79562378, 0.87755553, 0.92795967],
                         [0.97934501, 0.99144213, 0.99646691, 0.99854353]],
    "rnn_forward": [[[-0.42070749, -0.27279261, -0.11074945, 0.05740409, 0.22236251],
                     [-0.39525808, -0.22554661, -0.0409454, 0.14649412, 0.32397316],
                     [-0.42305111, -0.24223728, -0.04287027, 0.15997045, 0.35014525]],
                    [[-0.55857474, -0.39065825, -0.19198182, 0.02378408, 0.23735671],
                     [-0.27150199, -0.07088804, 0.13562939, 0.33099728, 0.50158768],
                     [-0.51014825, -0.30524429, -0.06755202, 0.17806392, 0.40333043]]],
    "word_embedding": [[[0.0, 0.07142857, 0.14285714], [0.64285714, 0.71428571, 0.78571429],
                        [0.21428571, 0.28571429, 0.35714286], [0.42857143, 0.5, 0.57142857]],
                       [[0.42857143, 0.5, 0.57142857], [0.21428571, 0.28571429, 0.35714286],
                        [0.0, 0.07142857, 0.14285714], [0.64285714, 0.71428571, 0.78571429]]],
    "lstm_step_h": [[0.24635157, 0.28610883, 0.32240467, 0.35525807, 0.38474904],
                    [0.49223563, 0.55611431, 0.61507696, 0.66844003, 0.7159181],
                    [0.56735664, 0.66310127, 0.74419266, 0.80889665, 0.858299]],
    "lstm_step_c": [[0.32986176, 0.39145139, 0.451556, 0.51014116, 0.56717407],
                    [0.66382255, 0.76674007, 0.87195994, 0.97902709, 1.08751345],
                    [0.74192008, 0.90592151, 1.07717006, 1.25120233, 1.42395676]],
    "lstm_forward": [[[0.01764008, 0.01823233, 0.01882671, 0.0194232],
                      [0.11287491, 0.12146228, 0.13018446, 0.13902939],
                      [0.31358768, 0.33338627, 0.35304453, 0.37250975]],
                     [[0.45767879, 0.4761092, 0.4936887, 0.51041945],
                      [0.6704845, 0.69350089, 0.71486014, 0.7346449],
                      [0.81733511, 0.83677871, 0.85403753, 0.86935314]]],
    "attn": [[-0.29784344, -0.07645979, 0.14492386, 0.36630751, 0.58769115],
             [0.81412643, 1.03551008, 1.25689373, 1.47827738, 1.69966103]],
    "attn_weights": [[[0.06511126, 0.06475411, 0.06439892, 0.06404568],
                      [0.06369438, 0.06334500, 0.06299754, 0.06265198],
                      [0.06230832, 0.06196655, 0.06162665, 0.06128861],
                      [0.06095243, 0.06061809, 0.06028559, 0.05995491]],
                     [[0.05717142, 0.05784357, 0.05852362, 0.05921167],
                      [0.05990781, 0.06061213, 0.06132473, 0.06204571],
                      [0.06277517, 0.06351320, 0.06425991, 0.06501540],
                      [0.06577977, 0.06655312, 0.06733557, 0.06812722]]],
    "attn_lstm_step_h": [[0.53704256, 0.59980774, 0.65596820, 0.70569729, 0.74932626],
                         [0.78729857, 0.82010653, 0.84828362, 0.87235677, 0.89283167],
                         [0.91017981, 0.92483119, 0.93717126, 0.94754073, 0.95623746]],
    "attn_lstm_step_c": [[0.59999328, 0.69285041, 0.78570758, 0.87856479, 0.97142202],
                         [1.06428558, 1.15714276, 1.24999992, 1.34285708, 1.43571424],
                         [1.52857143, 1.62142857, 1.71428571, 1.80714286, 1.90000000]],
    "attn_lstm_forward": [[[0.56141729, 0.70274849, 0.80000386, 0.86349400],
                           [0.89556391, 0.92856726, 0.94950579, 0.96281018],
                           [0.96792077, 0.97535465, 0.98039623, 0.98392994]],
                          [[0.95065880, 0.97135490, 0.98344373, 0.99045552],
                           [0.99317679, 0.99607466, 0.99774317, 0.99870293],
                           [0.99907382, 0.99946784, 0.99969426, 0.99982435]]],
}
SOURCE_TOL = 1e-6  # the source printed 8 decimals
SOURCE_KEYS = {  # case -> {output key: SOURCE key}: where each source value is graded
    "rnn/step_forward": {"source": "rnn_step_forward"},
    "rnn/forward": {"source": "rnn_forward"},
    "embedding/lookup": {"source": "word_embedding"},
    "lstm/step_forward": {"source_h": "lstm_step_h", "source_c": "lstm_step_c"},
    "lstm/forward": {"source": "lstm_forward"},
    "attention/dot_product": {"source": "attn", "source_weights": "attn_weights"},
    "attention/lstm_step_forward": {"source_h": "attn_lstm_step_h",
                                    "source_c": "attn_lstm_step_c"},
    "attention/lstm_forward": {"source": "attn_lstm_forward"},
}


def source(key: str) -> torch.Tensor:
    return torch.tensor(SOURCE[key], dtype=F64)


# ---------------------------------------------------------------------------------------
# Small builders
# ---------------------------------------------------------------------------------------

def sums_to_one(key, dims):
    """Property: outputs[key] sums to 1 over `dims` everywhere."""
    def holds(out):
        total = out[key].sum(dim=dims)
        return torch.allclose(total, torch.ones_like(total), atol=1e-6)
    return holds


# ---------------------------------------------------------------------------------------
# Part 1. The vanilla RNN
# ---------------------------------------------------------------------------------------

def rnn_step_inputs(g):
    N, D, H = 3, 10, 4
    return {"source": (linspace(-0.4, 0.7, N, D), linspace(-0.2, 0.5, N, H),
                       linspace(-0.1, 0.9, D, H), linspace(-0.3, 0.7, H, H),
                       linspace(-0.2, 0.4, H)),
            "random": (randn(g, 5, 7), randn(g, 5, 6), randn(g, 7, 6, scale=0.5),
                       randn(g, 6, 6, scale=0.5), randn(g, 6)),
            "single": (randn(g, 1, 7), randn(g, 1, 6), randn(g, 7, 6, scale=0.5),
                       randn(g, 6, 6, scale=0.5), randn(g, 6))}  # a batch of one


suite.add(Case(
    "rnn/step_forward", 2, rnn_step_inputs,
    lambda m, x, device: {k: m.rnn_step_forward(*v)[0] for k, v in x.items()},
    tol=SOURCE_TOL, hint="next_h = tanh(x @ Wx + prev_h @ Wh + b)"))

NUMERIC_STEP = 1e-6  # centred differences in float64: errors ~1e-8, tolerance 1e-5
GRAD_NAMES = ("dx", "dh", "dWx", "dWh", "db")


def step_backward_inputs(g):
    N, D, H = 4, 5, 6  # the source's sizes
    return {"args": (randn(g, N, D), randn(g, N, H), randn(g, D, H), randn(g, H, H),
                     randn(g, H)),
            "upstream": randn(g, N, H)}


def step_backward_call(m, x, device):
    _, cache = m.rnn_step_forward(*x["args"])
    return dict(zip(GRAD_NAMES, m.rnn_step_backward(x["upstream"], cache)))


suite.add(Case(
    "rnn/step_backward", 3, step_backward_inputs, step_backward_call,
    tol=1e-5,
    hint="returns (dx, dprev_h, dWx, dWh, db); through tanh first: its derivative is 1 - next_h "
         "squared"))


def rnn_forward_inputs(g):
    N, T, D, H = 2, 3, 4, 5
    return {"source": (linspace(-0.1, 0.3, N, T, D), linspace(-0.3, 0.1, N, H),
                       linspace(-0.2, 0.4, D, H), linspace(-0.4, 0.1, H, H),
                       linspace(-0.7, 0.1, H)),
            "random": (randn(g, 3, 6, 4), randn(g, 3, 5), randn(g, 4, 5, scale=0.5),
                       randn(g, 5, 5, scale=0.5), randn(g, 5)),
            "single": (randn(g, 1, 6, 4), randn(g, 1, 5), randn(g, 4, 5, scale=0.5),
                       randn(g, 5, 5, scale=0.5), randn(g, 5))}


suite.add(Case(
    "rnn/forward", 2, rnn_forward_inputs,
    lambda m, x, device: {k: m.rnn_forward(*v)[0] for k, v in x.items()},
    tol=SOURCE_TOL, hint="h[:, t] is rnn_step_forward of x[:, t] and h[:, t-1] (h0 at t = 0)"))


def rnn_backward_inputs(g, N=2, T=10, D=3, H=5):  # the source's sizes
    return {"args": (randn(g, N, T, D), randn(g, N, H), randn(g, D, H), randn(g, H, H),
                     randn(g, H)),
            "upstream": randn(g, N, T, H)}


def rnn_backward_call(m, x, device):
    _, cache = m.rnn_forward(*x["args"])
    return dict(zip(GRAD_NAMES, m.rnn_backward(x["upstream"], cache)))


suite.add(Case(
    "rnn/backward", 3, rnn_backward_inputs, rnn_backward_call,
    tol=1e-5,
    hint="loop backwards; the gradient into h_t is dh[:, t] plus what step t+1 sent back"))

suite.add(Case(
    "rnn/backward_vs_autograd", 2, lambda g: rnn_backward_inputs(g, N=3, T=6, D=4, H=7),
    rnn_backward_call,
    tol=TOL,
    hint="your backward must agree with autograd on rnn_forward"))


def rnn_module_inputs(g):
    return {"state": {"Wx": randn(g, 4, 6, scale=0.5), "Wh": randn(g, 6, 6, scale=0.5),
                      "b": randn(g, 6)},
            "x": randn(g, 2, 5, 4), "h0": randn(g, 2, 6)}


def rnn_module_call(m, x, device):
    rnn = load_state(m.RNN(4, 6), x["state"], device, F64)
    with torch.no_grad():
        return {"forward": rnn(x["x"], x["h0"]), "step": rnn.step_forward(x["x"][:, 0], x["h0"])}


suite.add(Case("rnn/module", 1, rnn_module_inputs, rnn_module_call, tol=TOL,
               hint="the RNN module calls your rnn_forward and rnn_step_forward"))


# ---------------------------------------------------------------------------------------
# Part 2. Word embedding and the loss
# ---------------------------------------------------------------------------------------

def embedding_inputs(g):
    V, D = 5, 3
    return {"source": (torch.tensor([[0, 3, 1, 2], [2, 1, 0, 3]]), linspace(0, 1, V, D)),
            "random": (torch.randint(0, 9, (3, 6), generator=g), randn(g, 9, 4)),
            # ids of any shape: one per caption (as sample feeds them), and (N, T, K)
            "one_per_caption": (torch.randint(0, 9, (5,), generator=g), randn(g, 9, 4)),
            "three_dims": (torch.randint(0, 9, (2, 3, 4), generator=g), randn(g, 9, 4))}


def embedding_call(m, x, device):
    out = {}
    for key, (ids, W) in x.items():
        layer = load_state(m.WordEmbedding(*W.shape), {"W_embed": W}, device, F64)
        with torch.no_grad():  # a crash on one shape of ids costs that row only
            out[key] = attempt(lambda: layer(ids), (*ids.shape, W.shape[1]))
    return out


suite.add(Case("embedding/lookup", 1, embedding_inputs, embedding_call, tol=SOURCE_TOL,
               hint="out[n, t] is row x[n, t] of W_embed: index the table (ids of any shape: "
                    "(N,) gives (N, D), (N, T, K) gives (N, T, K, D))"))


def loss_inputs(g):
    N, T, V = 6, 5, 7
    y = torch.randint(0, V, (N, T), generator=g)
    y[torch.rand(N, T, generator=g) > 0.7] = 0  # some <NULL> padding
    return {"x": randn(g, N, T, V), "y": y,
            "small_x": randn(g, 40, 3, 10, scale=0.001),
            "small_y": torch.randint(0, 10, (40, 3), generator=g),
            "single_x": randn(g, 1, T, V), "single_y": y[:1]}


def loss_call(m, x, device):
    _, (gradient,) = value_and_gradients(lambda z: m.temporal_softmax_loss(z, x["y"], 0), x["x"])
    return {"ignore_null": m.temporal_softmax_loss(x["x"], x["y"], 0), "gradient": gradient,
            "ignore_none": m.temporal_softmax_loss(x["x"], x["y"]),
            "ignore_3": m.temporal_softmax_loss(x["x"], x["y"], ignore_index=3),
            "near_uniform": m.temporal_softmax_loss(x["small_x"], x["small_y"], 0),
            "single": m.temporal_softmax_loss(x["single_x"], x["single_y"], 0)}


suite.add(Case("loss/temporal_softmax", 2, loss_inputs, loss_call, tol=TOL,
               hint="sum the cross-entropy over all kept tokens, then divide by N (not by the "
                    "number of tokens); keep it a tensor of the graph (it trains the model)"))


# ---------------------------------------------------------------------------------------
# Part 3. CaptioningRNN: loss and sampling, with weights loaded by name
# ---------------------------------------------------------------------------------------

MODEL_VOCAB = data.build_vocab(["cat", "dog", "sat", "on", "the", "mat"])  # V = 10
TOKENS = MODEL_VOCAB["token_to_idx"]
NULL, START, END = TOKENS["<NULL>"], TOKENS["<START>"], TOKENS["<END>"]
OTHER_IGNORE = TOKENS["the"]  # an ignore_index that is not <NULL> (and occurs in captions)
SMALL = dict(input_dim=12, wordvec_dim=10, hidden_dim=8, encoder_width=4)  # tiny, float64


def model_shapes(cell: str, input_dim: int, wordvec_dim: int, hidden_dim: int,
                 encoder_width: int, vocab_size: int = len(TOKENS)) -> dict:
    """The parameter names and shapes of CaptioningRNN: the contract weights load by."""
    encoder = data.ImageEncoder(input_dim, encoder_width)
    shapes = {f"image_encoder.{k}": list(v.shape) for k, v in encoder.state_dict().items()}
    gates = 1 if cell == "rnn" else 4
    shapes.update({
        "feature_proj.weight": [hidden_dim, input_dim], "feature_proj.bias": [hidden_dim],
        "word_embedding.W_embed": [vocab_size, wordvec_dim],
        "rnn.Wx": [wordvec_dim, gates * hidden_dim], "rnn.Wh": [hidden_dim, gates * hidden_dim],
        "rnn.b": [gates * hidden_dim],
        "output.weight": [vocab_size, hidden_dim], "output.bias": [vocab_size]})
    if cell == "attn":
        shapes["rnn.Wattn"] = [hidden_dim, 4 * hidden_dim]
    return shapes


def build_model(m, cell, state, device, ignore_index=NULL):
    model = m.CaptioningRNN(TOKENS, cell_type=cell, ignore_index=ignore_index, **SMALL)
    return load_state(model, state, device, F64)


def random_model_state(cell, seed: int, scale=0.5) -> dict:
    g = torch.Generator().manual_seed(seed)
    state = {k: randn(g, *shape, scale=scale) for k, shape in model_shapes(cell, **SMALL).items()}
    state["image_encoder.norm.weight"] += 1.0
    return state


def model_forward_inputs(g, cell):
    N, T = 4, 7
    captions = torch.randint(3, len(TOKENS), (N, T), generator=g)
    captions[:, 1] = OTHER_IGNORE  # every caption holds the other ignored word
    captions[:, 0] = START
    for row, length in enumerate(torch.randint(3, T, (N,), generator=g).tolist()):  # padded
        captions[row, length - 1] = END
        captions[row, length:] = NULL
    return {"cell": cell, "seed": torch.randint(2**31, (), generator=g),
            "images": data.make_scenes(N, int(torch.randint(2**31, (), generator=g)))[0],
            "captions": captions}


def model_forward_call(m, x, device):
    """As in the source: every parameter set to linspace(-1.4, 1.3) and linspace images and
    captions; then random weights on real scenes with <NULL>-padded captions, with the
    model's ignore_index set to <NULL>, to another word, and to None (nothing ignored), and
    the first of them alone (a batch of one); the loss's gradient with respect to every
    parameter (by name), image_encoder's included."""
    cell, N, T = x["cell"], 4, 13  # the source had N = 10: fewer float64 convolutions
    shapes = model_shapes(cell, **SMALL)
    lin = {k: linspace(-1.4, 1.3, *s)
           for k, s in shapes.items()}
    images = torch.linspace(-3.0, 3.0, N * 3 * 32 * 32, dtype=F64, device=device)
    images = images.view(N, 3, 32, 32)
    captions = (torch.arange(N * T, device=device) % len(TOKENS)).view(N, T)
    state = random_model_state(cell, int(x["seed"]))
    model = build_model(m, cell, state, device)
    loss = model(x["images"], x["captions"])
    out = {"random": loss.detach() if isinstance(loss, torch.Tensor) else loss,
           "gradients": parameter_gradients(model, loss)}
    with torch.no_grad():
        out["linspace"] = build_model(m, cell, lin, device)(images, captions)
        out["single"] = build_model(m, cell, state, device)(x["images"][:1], x["captions"][:1])
        for key, ignore in (("ignore_word", OTHER_IGNORE), ("ignore_none", None)):
            model = build_model(m, cell, state, device, ignore_index=ignore)
            out[key] = model(x["images"][:2], x["captions"][:2])
    return out


def parameter_gradients(model, loss) -> dict:
    """{parameter name: the gradient of `loss` with respect to it}, zeros where the loss
    does not reach it (a loss cut from the graph, or a part detached)."""
    named = dict(model.named_parameters())
    reaches = isinstance(loss, torch.Tensor) and loss.requires_grad
    grads = (torch.autograd.grad(loss, list(named.values()), allow_unused=True) if reaches
             else [None] * len(named))
    return {name: torch.zeros_like(p) if g is None else g
            for (name, p), g in zip(named.items(), grads)}


FORWARD_HINTS = {
    "rnn": "h0 is feature_proj of the features averaged over the grid; predict captions[:, 1:] "
           "from captions[:, :-1]",
    "lstm": "as for rnn, with the LSTM as the recurrent module (its cell starts at 0 inside "
            "LSTM.forward)",
    "attn": "A is feature_proj applied to every grid cell, (N, H, 4, 4); the attention LSTM "
            "reads the words and A"}
for _cell in ("rnn", "lstm", "attn"):
    suite.add(Case(f"model/forward_{_cell}", 2,
                   lambda g, cell=_cell: model_forward_inputs(g, cell), model_forward_call,
                   tol=TOL, hint=FORWARD_HINTS[_cell] + "; return the loss as a tensor of the "
                                                          "graph: its gradient reaches every "
                                                          "parameter, image_encoder's too"))


SAMPLE_N, SAMPLE_LENGTH = 10, 12
SAMPLE_LONG = 6  # at least 3 captions of a sampling case run this many words or more


def sample_state(cell: str, seed: int) -> dict:
    """Random weights for the sampling cases."""
    state = random_model_state(cell, seed, scale=1.0)
    state["feature_proj.weight"] *= 3.0  # let the picture matter more than the bias
    state["output.weight"][END] *= 3.0  # whether a caption ends depends on its state
    state["output.bias"][[NULL, START]] -= 10.0  # a trained model never predicts these
    return state




def caption_lengths(captions):
    """Words before the first <END> (or all of them), per caption."""
    return captions.ne(NULL).sum(dim=1) - captions.eq(END).any(dim=1).long()


def sample_inputs(g, cell):
    """Weights and scenes that make sampling mistakes visible; candidates are drawn until
    the reference shows all of it: the captions differ; some stop early at <END> (so that
    stopping is tested) while 3 or more run SAMPLE_LONG words (so that what an LSTM
    carries from step to step matters); for the LSTMs, captions change when the cell state
    is restarted at every step. Built in the instructor's process only (fixtures, audits),
    with the oracle's greedy decoding."""
    from grader.authoring import oracle_module
    greedy = oracle_module("captioning").reference_sample
    for _ in range(200):
        x = {"cell": cell, "seed": torch.randint(2**31, (), generator=g),
             "images": data.make_scenes(SAMPLE_N, int(torch.randint(2**31, (), generator=g)))[0]}
        state = sample_state(cell, int(x["seed"]))
        captions = greedy(cell, state, x["images"], SAMPLE_LENGTH)["captions"]
        early = captions[:, :-1].eq(END).any(dim=1)
        long = caption_lengths(captions) >= SAMPLE_LONG
        if not (early.any() and long.sum() >= 3 and len(set(map(tuple, captions.tolist()))) > 1):
            continue
        if cell == "rnn" or not torch.equal(captions, greedy(
                cell, state, x["images"], SAMPLE_LENGTH, carry_cell=False)["captions"]):
            break
    return x


def sample_call(m, x, device):
    cell = x["cell"]
    model = build_model(m, cell, sample_state(cell, int(x["seed"])), device)
    result = {}
    for prefix, images in (("", x["images"]), ("single_", x["images"][:1])):  # 1: a batch of one
        with torch.no_grad():
            out = model.sample(images, max_length=SAMPLE_LENGTH)
        if cell != "attn":
            result[prefix + "captions"] = out
            continue
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise TypeError("for cell_type='attn', sample must return (captions, attn_weights)")
        if isinstance(out[1], torch.Tensor) and out[1].dtype != model.output.weight.dtype:
            raise TypeError(f"attn_weights are {out[1].dtype}; they must have the model's dtype "
                            f"({model.output.weight.dtype} here): make the buffer with "
                            f"A.new_zeros(...) or dtype=A.dtype")
        result[prefix + "captions"], result[prefix + "attn_weights"] = out
    return result


def no_start(out):
    return not out["captions"].eq(START).any()


def null_after_end(out):
    ended = out["captions"].eq(END).long().cumsum(dim=1) - out["captions"].eq(END).long()
    return bool(out["captions"][ended > 0].eq(NULL).all())


SAMPLE_PROPERTIES = [
    Property(no_start, "the sampled captions contain <START>: position 0 must hold the first "
                       "sampled word"),
    Property(null_after_end, "words follow <END>: every position after a caption's first "
                             "<END> must be <NULL>")]
for _cell in ("rnn", "lstm", "attn"):
    properties = list(SAMPLE_PROPERTIES)
    if _cell == "attn":
        properties.append(Property(sums_to_one("attn_weights", (2, 3)),
                                   "attention weights do not sum to 1 over the 4x4 grid"))
    suite.add(Case(f"model/sample_{_cell}", 2, lambda g, cell=_cell: sample_inputs(g, cell),
                   sample_call, tol=SAMPLE_TOL, properties=properties,
                   hint="greedy: feed back the argmax word; captions (N, max_length) without "
                        "<START>, <NULL> after <END>"
                        + ("; also return the weights of every step, in the model's dtype"
                           if _cell == "attn" else "")))


# ---------------------------------------------------------------------------------------
# Part 4. LSTM and attention
# ---------------------------------------------------------------------------------------

def lstm_source_weights(Wattn=False, forward=False):
    """The source's linspace weights for step_forward (forward=False) or forward."""
    D, H = (5, 4) if forward else (4, 5)
    if forward:
        w = {"Wx": linspace(-0.2, 0.9, D, 4 * H), "Wh": linspace(-0.3, 0.6, H, 4 * H),
             "b": linspace(0.2, 0.7, 4 * H)}
    else:
        w = {"Wx": linspace(-2.1, 1.3, D, 4 * H), "Wh": linspace(-0.7, 2.2, H, 4 * H),
             "b": linspace(0.3, 0.7, 4 * H)}
    if Wattn:
        w["Wattn"] = linspace(1.3, 4.2, H, 4 * H)
    return w


def random_lstm_weights(g, D, H, Wattn=False):
    w = {"Wx": randn(g, D, 4 * H, scale=0.5), "Wh": randn(g, H, 4 * H, scale=0.5),
         "b": randn(g, 4 * H, scale=0.5)}
    if Wattn:
        w["Wattn"] = randn(g, H, 4 * H, scale=0.5)
    return w


def lstm_step_inputs(g, attn=False):
    N, D, H = 3, 4, 5
    source_in = {"x": linspace(-0.4, 1.2, N, D), "h": linspace(-0.3, 0.7, N, H),
                 "c": linspace(-0.4, 0.9, N, H), "w": lstm_source_weights(attn)}
    random_in = {"x": randn(g, 4, 6), "h": randn(g, 4, 3), "c": randn(g, 4, 3),
                 "w": random_lstm_weights(g, 6, 3, attn)}
    single_in = {"x": randn(g, 1, 6), "h": randn(g, 1, 7), "c": randn(g, 1, 7),
                 "w": random_lstm_weights(g, 6, 7, attn)}  # a batch of one, H = 7
    if attn:
        source_in["attn"] = linspace(0.6, 1.8, N, H)
        random_in["attn"] = randn(g, 4, 3)
        single_in["attn"] = randn(g, 1, 7)
    return {"source": source_in, "random": random_in, "single": single_in}


def lstm_step_call(m, x, device):
    out = {}
    for key, v in x.items():
        cls = m.AttentionLSTM if "attn" in v else m.LSTM
        layer = load_state(cls(*v["w"]["Wx"].shape[:1], v["h"].shape[1]), v["w"], device, F64)
        extra = (v["attn"],) if "attn" in v else ()
        with torch.no_grad():
            out[key + "_h"], out[key + "_c"] = layer.step_forward(v["x"], v["h"], v["c"], *extra)
    return out


suite.add(Case("lstm/step_forward", 2, lstm_step_inputs, lstm_step_call, tol=SOURCE_TOL,
               hint="the 4H columns are the gates i, f, o, g in this order"))


def lstm_forward_inputs(g, attn=False):
    N, D, H, T = 2, 5, 4, 3
    source_in = {"x": linspace(-0.4, 0.6, N, T, D), "w": lstm_source_weights(attn, True)}
    # H = 6 (not 4 = D_a, the grid's side, nor D = 5): confusing them cannot go unseen
    random_in = {"x": randn(g, 3, 7, 5), "w": random_lstm_weights(g, 5, 6, attn)}
    single_in = {"x": randn(g, 1, 4, 5), "w": random_lstm_weights(g, 5, 6, attn)}
    if attn:
        source_in["A"] = linspace(-0.4, 1.8, N, H, 4, 4)
        random_in["A"] = randn(g, 3, 6, 4, 4)
        single_in["A"] = randn(g, 1, 6, 4, 4)
    else:
        source_in["h0"] = linspace(-0.4, 0.8, N, H)
        random_in["h0"] = randn(g, 3, 6)
        single_in["h0"] = randn(g, 1, 6)
    return {"source": source_in, "random": random_in, "single": single_in}


def lstm_forward_call(m, x, device):
    out = {}
    for key, v in x.items():
        D, H = v["w"]["Wx"].shape[0], v["w"]["Wh"].shape[0]
        cls = m.AttentionLSTM if "A" in v else m.LSTM
        layer = load_state(cls(D, H), v["w"], device, F64)
        with torch.no_grad():
            out[key] = layer(v["x"], v["A"] if "A" in v else v["h0"])
    return out


suite.add(Case("lstm/forward", 2, lstm_forward_inputs, lstm_forward_call, tol=SOURCE_TOL,
               hint="c0 = 0; return the hidden state of every step, (N, T, H)"))


def attention_inputs(g):
    N, H, D_a = 2, 5, 4
    return {"source": (linspace(-0.4, 0.6, N, H), linspace(-0.4, 1.8, N, H, D_a, D_a)),
            "random": (randn(g, 3, 6), randn(g, 3, 6, 4, 4)),
            "single": (randn(g, 1, 7), randn(g, 1, 7, 4, 4))}  # a batch of one, H = 7


def attention_call(m, x, device):
    out = {}
    for key, (prev_h, A) in x.items():
        out[key], out[key + "_weights"] = m.dot_product_attention(prev_h, A)
    return out


suite.add(Case(
    "attention/dot_product", 2, attention_inputs, attention_call,
    # The source printed the weights (~0.06) to 8 decimals: its own rounding is up to 7e-8 of
    # their scale, so 1e-6 would leave only 14x; known mistakes start at 0.2.
    tol=1e-5,
    properties=[Property(sums_to_one("random_weights", (1, 2)),
                         "attention weights do not sum to 1 over the 4x4 grid")],
    hint="scores = prev_h . A[:, :, cell] / sqrt(H); softmax over the 16 cells"))

suite.add(Case("attention/lstm_step_forward", 2, lambda g: lstm_step_inputs(g, attn=True),
               lstm_step_call,
               tol=SOURCE_TOL,
               hint="a = x @ Wx + prev_h @ Wh + attn @ Wattn + b, gates i, f, o, g"))

suite.add(Case("attention/lstm_forward", 2, lambda g: lstm_forward_inputs(g, attn=True),
               lstm_forward_call,
               # attention at every step carries a float32 scale to ~2e-8: TOL, not SOURCE_TOL
               tol=TOL,
               hint="h0 = c0 = the mean of A over the grid; attend with the previous h at every "
                    "step"))


# ---------------------------------------------------------------------------------------
# Every part on another device than the CPU (the meta device: shapes, no values)
# ---------------------------------------------------------------------------------------

def device_inputs(g):
    captions = torch.randint(3, len(TOKENS), (2, 6), generator=g)
    captions[:, 0] = START
    return {"x": randn(g, 2, 5, 4), "h0": randn(g, 2, 6), "upstream": randn(g, 2, 5, 6),
            "A": randn(g, 2, 6, 4, 4), "images": data.make_scenes(2, 7)[0],
            "captions": captions}


def device_call(m, x, device):
    """Each part with its inputs and modules on the meta device: a tensor it makes on the
    CPU (a zero state, a captions buffer without device=) meets them and is named. Every part
    runs there, each in its own run: one that stops at a step reading values (none should)
    leaves the others' checks going."""
    seq, h0, upstream, A = (elsewhere(x[k]) for k in ("x", "h0", "upstream", "A"))
    images, captions = elsewhere(x["images"]), elsewhere(x["captions"])

    def rnn_parts():
        rnn = m.RNN(4, 6).to(ELSEWHERE, F64)
        h, cache = m.rnn_forward(seq, h0, rnn.Wx, rnn.Wh, rnn.b)
        return {"step": m.rnn_step_forward(seq[:, 0], h0, rnn.Wx, rnn.Wh, rnn.b)[0],
                "forward": h, "backward": m.rnn_backward(upstream, cache), "module": rnn(seq, h0)}

    def model(cell):
        built = m.CaptioningRNN(TOKENS, cell_type=cell, ignore_index=NULL, **SMALL)
        return built.to(ELSEWHERE, F64).eval()

    runs = [rnn_parts,
            lambda: m.WordEmbedding(9, 4).to(ELSEWHERE, F64)(captions),
            lambda: m.temporal_softmax_loss(upstream, captions[:, :5], 0),
            lambda: m.LSTM(4, 6).to(ELSEWHERE, F64)(seq, h0),
            lambda: m.dot_product_attention(h0, A),
            lambda: m.AttentionLSTM(4, 6).to(ELSEWHERE, F64)(seq, A)]
    for cell in ("rnn", "lstm", "attn"):
        runs += [lambda cell=cell: model(cell)(images, captions),
                 lambda cell=cell: model(cell).sample(images, 4)]
    return device_checked(*runs)


suite.add(Case(
    "device/meta", 2, device_inputs, device_call, seeded=False, tol=TOL,
    hint="make new tensors (zero states, the captions buffer) on the inputs' device: "
         "torch.zeros_like(h), or device=images.device"))


# ---------------------------------------------------------------------------------------
# Training (CPU profile): overfit 50 scenes, then held-out captions for the attention LSTM
# ---------------------------------------------------------------------------------------

MODEL_SIZE = dict(input_dim=64, wordvec_dim=64, hidden_dim=128, encoder_width=16)
# The contract of training cases: `call` (in the student's sandbox) trains a fresh model of
# the student's code for a fixed number of steps and returns its state_dict; `evaluate` (in
# another sandbox, with the reference module and never the student's) loads those weights
# into the reference CaptioningRNN and computes the loss, or the held-out captions, itself.
#
# Calibration (reference solution, CPU, one thread; `tests/bench_captioning.py --calibrate`
# on the public (0) and autograder (1000000) inputs and more data seeds, plus the notebook's
# own run: scenes of seed 123, initialisation seed_everything(0)). The same settings on a
# GPU give the same figures up to noise.
#
# Overfitting: a caption's loss (summed over its 9 predicted tokens), averaged over the 50
# training scenes, after training. The source's targets were rnn < 0.5, lstm < 4, attn < 9
# (on COCO features); ours are set from the measured spread with a wide margin:
#   rnn   0.026-0.051 (worst 10x below the target), 320 steps, ~5 s
#   lstm  0.013-0.052 (worst 29x below),            720 steps, ~12 s. With 480 steps the
#         notebook's run ended at 1.25 (against 1.5): an LSTM sometimes sits on a plateau
#         for a while before it memorises, so it now gets 1.5 times the steps (7 runs:
#         public 0.022, autograder 0.016, the notebook's 0.052, 4 more seeds 0.013-0.024).
#   attn  0.027-0.047 (worst 10x below),            240 steps, ~6 s (notebook's run 0.031)
OVERFIT = {
    "rnn": dict(epochs=160, batch_size=25, lr=3e-3, target=0.5),
    "lstm": dict(epochs=360, batch_size=25, lr=3e-3, target=1.5),
    "attn": dict(epochs=120, batch_size=25, lr=3e-3, target=0.5),
}
OVERFIT_SCENES = 50
# Judged by work: every training case trains on one torch thread (train_captioner's default,
# and the sandbox pins it for a case with cpu_time) for a fixed number of steps, so its CPU
# seconds do not depend on the machine's load. The reference's CPU seconds on one thread
# (in-process, this 2-core machine under a load of ~4): rnn 3.9, lstm 8.8, attn 4.1; the
# limits are about 5x that. The wall-clock limits are backstops only: one overfit step takes
# 16-25 ms on an idle machine (60-80 ms with 10 processes on its 2 cores); they allow 250 ms
# per step, at least 120 s: rnn 120 s (24x idle), lstm 180 s (15x), attn 120 s (20x).
OVERFIT_CPU_TIME = {"rnn": 20.0, "lstm": 45.0, "attn": 20.0}


def overfit_time_limit(cell: str) -> float:
    p = OVERFIT[cell]
    return max(120.0, 0.25 * p["epochs"] * math.ceil(OVERFIT_SCENES / p["batch_size"]))
# Held-out: exact-caption accuracy of greedy captions on 200 new scenes, attention LSTM
# trained on 3000 scenes (1410 steps, ~45 s idle, 170-240 s with 10 processes on the 2
# cores): measured 0.775-0.915 over 12 runs, and through call -> weights -> evaluate on the
# current held-out scenes public 0.820, autograder 0.890; 0.60 leaves a margin of 0.175
# below the worst run. The RNN and LSTM reach only ~0.10 with the same budget: they are
# checked by overfitting alone.
HELD_OUT = dict(train_scenes=3000, test_scenes=200, epochs=15, batch_size=32, lr=2e-3,
                min_accuracy=0.6)
HELD_OUT_TIME_LIMIT = 600.0  # a wall-clock backstop: 13x the ~45 s of an idle machine
HELD_OUT_CPU_TIME = 120.0  # the reference used 26 s of CPU on one thread: about 5x that
MAX_WORDS = data.CAPTION_LENGTH - 1  # 8 words and <END>


def new_captioner(m, cell):
    return m.CaptioningRNN(data.SCENE_VOCAB["token_to_idx"], cell_type=cell, ignore_index=0,
                           **MODEL_SIZE)


def load_trained(reference_module, cell, weights, device):
    """The reference CaptioningRNN with the student's trained weights (strict), in eval mode.

    A mismatch is one line naming the missing and unexpected keys (or the first key whose
    shape differs), not torch's many-line message."""
    return inputs.load_trained(new_captioner(reference_module, cell), weights, device)


def overfit_inputs(g):
    return {"seed": torch.randint(2**31, (), generator=g)}


def overfit_call(m, x, device, cell):
    """In the student's sandbox: train a fresh model on the 50 scenes of `x`; its weights."""
    from dlkit.captions import make_scenes, train_captioner
    p = OVERFIT[cell]
    images, captions = make_scenes(OVERFIT_SCENES, int(x["seed"]))
    model = new_captioner(m, cell)
    train_captioner(model, images, captions, epochs=p["epochs"], batch_size=p["batch_size"],
                    lr=p["lr"], device=device, progress=False)
    return trained_state(model)


def overfit_reference(x):
    """The data the loss is measured on: the 50 training scenes (from their seed)."""
    return {"data": {"seed": x["seed"].clone()}}


def overfit_evaluate(reference_module, weights, data_, device, cell):
    """Trusted: the reference model with the trained weights, its loss on the 50 scenes."""
    images, captions = data.make_scenes(OVERFIT_SCENES, int(data_["seed"]))
    model = load_trained(reference_module, cell, weights, device)
    loss = data.caption_loss(model, images, captions, device=device)
    return torch.tensor(loss, dtype=torch.float64)


for _cell in ("rnn", "lstm", "attn"):
    suite.add(Case(
        f"train/overfit_{_cell}", 3, overfit_inputs,
        partial(overfit_call, cell=_cell), reference=overfit_reference,
        evaluate=partial(overfit_evaluate, cell=_cell),
        max_loss=OVERFIT[_cell]["target"], time_limit=overfit_time_limit(_cell),
        cpu_time=OVERFIT_CPU_TIME[_cell],
        hint=f"the loss on 50 training scenes did not fall below {OVERFIT[_cell]['target']} "
             f"(a caption's loss, summed over its words): check the {_cell} parts first"))


def held_out_inputs(g):
    """Only the training seed: the held-out scenes never reach the student's process."""
    return {"train_seed": torch.randint(2**31, (), generator=g)}


def held_out_seed(train_seed: int) -> int:
    """The held-out scenes' seed, derived in the trusted parent (another stream)."""
    return zlib.crc32(f"captioning held-out scenes {train_seed}".encode())


def held_out_reference(x):
    """Held-out scenes and their right captions (the words after <START>)."""
    images, captions = data.make_scenes(HELD_OUT["test_scenes"],
                                        held_out_seed(int(x["train_seed"])))
    return {"data": {"images": images}, "labels": captions[:, 1:].clone()}


def held_out_call(m, x, device):
    """In the student's sandbox: train the attention model on 3000 scenes; its weights."""
    from dlkit.captions import make_scenes, train_captioner
    p = HELD_OUT
    images, captions = make_scenes(p["train_scenes"], int(x["train_seed"]))
    model = new_captioner(m, "attn")
    train_captioner(model, images, captions, epochs=p["epochs"], batch_size=p["batch_size"],
                    lr=p["lr"], device=device, progress=False)
    return trained_state(model)


def held_out_evaluate(reference_module, weights, data_, device):
    """Trusted: greedy captions of the held-out scenes by the reference model's `sample`."""
    model = load_trained(reference_module, "attn", weights, device)
    captions, _ = data.sample_in_batches(model, data_["images"], MAX_WORDS, device=device)
    return captions


suite.add(Case(
    "train/heldout_attn", 6, held_out_inputs, held_out_call, reference=held_out_reference,
    evaluate=held_out_evaluate, min_accuracy=HELD_OUT["min_accuracy"],
    time_limit=HELD_OUT_TIME_LIMIT, cpu_time=HELD_OUT_CPU_TIME,
    hint="the attention model must caption new scenes exactly; check model/sample_attn and "
         "train/overfit_attn first"))
