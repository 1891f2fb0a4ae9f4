"""The graded cases of the `transformer` assignment.

Inputs are built from a seeded generator, so the public set (self-checks) and the autograder
set (other seeds) differ. Reference layers from `torch.nn` provide the expected values where
the assignment promises to match them (`solutions/transformer_oracles.py`, instructor side
only).

Numbers: every numeric case runs on float64 inputs and float64 weights (the functions and
modules work in the dtype they are given), so correct code agrees with the reference to
about 1e-15 of the output's scale whatever order it adds in (scale before or after the
matmul, einsum or bmm, loops, the fused torch kernel, rsqrt, variance by hand), and to about
1e-7 with a float32 constant (the scale as `torch.sqrt(torch.tensor(d, dtype=torch.float32))`,
an equivalent). Two tolerances, measured with `python -m grader audit transformer` (the
tolerance policy: 100x above the worst correct code and below the best known mistake where
possible, never under 10x):
  EXACT_TOL = 1e-5 where no float32 intermediate is allowed (float32 constants are);
  SOFTMAX_TOL = 1e-4 where attention or a loss runs: a softmax computed in float32 (the
    convention's minimum, and what `.float()` gives) moves float64 outputs by up to 5e-7 of
    their scale.
Known mistakes move outputs by 1e-2 of their scale or more. The
exceptions are float32 by contract: `sinusoidal_positions` returns float32 (tolerance 1e-4;
float32 frequencies err by ~2e-6), `attention/vectorized` has one float32 row that checks
the output keeps the dtype of `v`, and `summarize/masked_loss` one whose loss stays float32.

Rows with a batch of one catch a bare `.squeeze()`; one multi-head case uses 3 heads of
width 8 and another 8 heads of width 4 (not the default 4 x 8), and one encoder layer case
other widths, so code that hard-codes a size fails, and is named.

Dropout is graded exactly: `layer/dropout` (each layer) and `model/forward` run with
p_drop = 1.0 in training mode, where every dropout zeroes its input, so a dropout in the
wrong place (after the LayerNorm, on the sublayer's input, on the attention weights or the
embeddings) changes the output (one applied twice in the same place does not: rate 1.0 is
idempotent); decoding from a model left in training mode must switch it to eval mode. Losses
are judged by their gradients too. `device/meta` runs the parts on the meta device, where a
tensor made on the CPU is named.

The training cases train the student's model in the sandbox for a fixed number of steps and
return its weights (one torch thread, limited in CPU seconds: judged by work, not by the
clock): the reference's `greedy_decode` scores them on held-out problems
(`train/arithmetic`), or the reference's collate and loss measure the validation loss on
held-out docstrings (`summarize/train`); the held-out data never reaches the child.
"""
from functools import partial

import torch
from torch import nn

from dlkit import arith
from grader import inputs, policy
from grader.cases import Case, Property, Suite
from grader.inputs import (ELSEWHERE, device_checked, elsewhere, load_state, load_trained,
                           torch_threads, trained_state, value_and_gradients)

suite = Suite("transformer")

# The library-shortcut policy (instructors: edit here). Per part, the library calls that would
# do its work; a case graded on that part loses its points when the part uses one of them
# (grader/policy.py). The part's docstring in solutions/transformer.py says what is off limits.
for _part, _cases in (("scaled_dot_product_two_loop_single", ["attention/two_loop_single"]),
                     ("scaled_dot_product_two_loop_batch", ["attention/two_loop_batch"]),
                     ("scaled_dot_product_no_loop_batch", ["attention/no_loop_batch"]),
                     ("scaled_dot_product_attention", ["attention/vectorized",
                                                       "attention/key_padding_mask",
                                                       "attention/causal"])):
    suite.ban(_part, policy.ATTENTION, cases=_cases)
suite.ban("MultiheadAttention.forward", policy.MULTI_HEAD, cases=["mha/"])
suite.ban("LayerNorm.forward", policy.LAYER_NORM, cases=["layernorm/"])
suite.ban("TransformerLayer.forward", policy.TRANSFORMER_LAYERS, cases=["layer/"])
for _part in ("Transformer.encode", "Transformer.decode", "Transformer.forward"):
    suite.ban(_part, policy.TRANSFORMER_LAYERS,
              cases=["model/forward", "model/greedy_decode", "summarize/greedy_stops"])

# Later parts run the student's earlier ones: their failures name the part to fix first.
ATTENTION_CASES = ["attention/vectorized", "attention/key_padding_mask", "attention/causal"]
MODEL_CASES = ["model/forward", "model/greedy_decode", "summarize/greedy_stops"]
suite.builds_on(["mha/", "layer/", "device/"] + MODEL_CASES, "scaled_dot_product_attention",
                ATTENTION_CASES)
suite.builds_on(["layer/", "device/"] + MODEL_CASES, "MultiheadAttention", ["mha/"])
suite.builds_on(["layer/", "device/"] + MODEL_CASES, "LayerNorm", ["layernorm/"])
suite.builds_on(["layer/", "device/"] + MODEL_CASES, "FeedForward", ["ffn/"])
suite.builds_on(["device/"] + MODEL_CASES, "TransformerLayer",
                ["layer/encoder_vs_torch", "layer/decoder_vs_torch", "layer/dropout"])
suite.builds_on(["device/"] + MODEL_CASES, "Transformer.make_positions",
                ["positions/make_positions"])
suite.builds_on(["model/forward"], "Transformer.shift_right", ["model/shift_right"])
suite.builds_on(["model/greedy_decode", "summarize/greedy_stops", "summarize/train_loop"],
                "Transformer", ["model/forward"])
suite.builds_on(["summarize/train_loop"], "collate_summaries", ["summarize/collate"])
suite.builds_on(["summarize/train_loop"], "masked_token_loss", ["summarize/masked_loss"])

F64 = torch.float64
randn = partial(inputs.randn, dtype=F64)        # every numeric case runs in float64
linspace = partial(inputs.linspace, dtype=F64)
EXACT_TOL = 1e-5     # float64 end to end (correct code: ~1e-15; a float32 constant ~1e-7)
SOFTMAX_TOL = 1e-4   # float64 with attention: a float32 softmax is allowed (<= 5e-7)

SOURCE_VOCAB = [str(d) for d in range(10)] + [
    "POSITIVE", "NEGATIVE", "add", "subtract", "BOS", "EOS", "PAD"]
SOURCE_EXPRESSIONS = [  # the source homework's tokenization examples
    "BOS POSITIVE 0333 add POSITIVE 0696 EOS", "BOS POSITIVE 0673 add POSITIVE 0675 EOS",
    "BOS NEGATIVE 0286 subtract NEGATIVE 0044 EOS", "BOS NEGATIVE 0420 add POSITIVE 0342 EOS",
    "BOS POSITIVE 1029 EOS", "BOS POSITIVE 1348 EOS", "BOS NEGATIVE 0242 EOS",
    "BOS NEGATIVE 0078 EOS",
]
PAD, EOS = SOURCE_VOCAB.index("PAD"), SOURCE_VOCAB.index("EOS")


# ---------------------------------------------------------------------------------------
# Small builders
# ---------------------------------------------------------------------------------------

def padding_mask(g, batch, length, dtype=torch.bool, distinct=False, padded=False):
    """A random key-padding mask (1 = pad) whose rows keep at least the first position.

    distinct: every row has another length (so a mask applied to the wrong row shows);
    padded: every row has at least one PAD."""
    top = length if padded else length + 1
    if distinct:
        lengths = torch.randperm(top - 1, generator=g)[:batch] + 1
    else:
        lengths = torch.randint(1, top, (batch,), generator=g)
    return (torch.arange(length)[None, :] >= lengths[:, None]).to(dtype)


def random_state(module: nn.Module, g, scale=0.05) -> dict:
    """The module's state_dict with every tensor redrawn from `g` (normal, std `scale`),
    in float64; LayerNorm weights (`norm*.weight`) are drawn around 1, as trained ones are
    (weights near 0 shrink the outputs until rounding looks like a mistake)."""
    state = {k: randn(g, *v.shape, scale=scale) for k, v in module.state_dict().items()}
    for k in state:
        if k.startswith("norm") and k.endswith(".weight"):
            state[k] = 1.0 + randn(g, *state[k].shape, scale=0.1)
        elif k.startswith("norm") and k.endswith(".bias"):
            state[k] = randn(g, *state[k].shape, scale=0.1)
    return state


def mha_state(prefix: str, torch_state: dict, d: int) -> dict:
    """torch.nn.MultiheadAttention weights -> this course's q/k/v/o projections."""
    w, b = torch_state[prefix + "in_proj_weight"], torch_state[prefix + "in_proj_bias"]
    out = {}
    for i, name in enumerate("qkv"):
        out[f"{name}_proj.weight"] = w[i * d:(i + 1) * d]
        out[f"{name}_proj.bias"] = b[i * d:(i + 1) * d]
    out["o_proj.weight"] = torch_state[prefix + "out_proj.weight"]
    out["o_proj.bias"] = torch_state[prefix + "out_proj.bias"]
    return out


def prefixed(prefix: str, state: dict) -> dict:
    return {prefix + k: v for k, v in state.items()}


def layer_state(torch_state: dict, d: int, decoder: bool) -> dict:
    """nn.TransformerEncoderLayer / DecoderLayer weights -> TransformerLayer's names."""
    out = prefixed("self_attn.", mha_state("self_attn.", torch_state, d))
    norms = ["self_attn_ln", "cross_attn_ln", "ffn_ln"] if decoder else ["self_attn_ln", "ffn_ln"]
    if decoder:
        out.update(prefixed("cross_attn.", mha_state("multihead_attn.", torch_state, d)))
    for i, name in enumerate(norms, start=1):
        out[f"{name}.weight"] = torch_state[f"norm{i}.weight"]
        out[f"{name}.bias"] = torch_state[f"norm{i}.bias"]
    for i in (1, 2):
        out[f"ffn.fc{i}.weight"] = torch_state[f"linear{i}.weight"]
        out[f"ffn.fc{i}.bias"] = torch_state[f"linear{i}.bias"]
    return out


def same_prefix(first: str, second: str, cut: str):
    """Property: outputs[first] and outputs[second] agree on positions < outputs[cut]."""
    def holds(out):
        t = int(out[cut])
        return torch.allclose(out[first][:, :t], out[second][:, :t], rtol=1e-4, atol=1e-5)
    return holds


# ---------------------------------------------------------------------------------------
# Part 1. Tokenization
# ---------------------------------------------------------------------------------------

def token_dict_inputs(g):
    order = torch.randperm(len(SOURCE_VOCAB), generator=g).tolist()
    return {"vocab": SOURCE_VOCAB, "shuffled": [SOURCE_VOCAB[i] for i in order]}


def token_dict_call(m, x, device):
    result = {}
    for key in ("vocab", "shuffled"):
        d = m.generate_token_dict(list(x[key]))
        result[key] = torch.tensor([d[t] for t in x[key]] + [len(d)])
    return result


suite.add(Case("tokens/token_dict", 1, token_dict_inputs, token_dict_call,
               hint="token i of the list must map to id i"))


def preprocess_inputs(g):
    problems = arith.all_problems()
    picks = torch.randint(len(problems), (8,), generator=g).tolist()
    return {"vocab": SOURCE_VOCAB, "expressions": SOURCE_EXPRESSIONS + [
        arith.expression_text(*problems[i]) for i in picks]}


def preprocess_call(m, x, device):
    specials = list(x["vocab"][10:])
    d = {t: i for i, t in enumerate(x["vocab"])}
    ids = [m.preprocess_input_sequence(e, d, specials) for e in x["expressions"]]
    return {"ids": torch.tensor([i for row in ids for i in row]),
            "lengths": torch.tensor([len(row) for row in ids])}


suite.add(Case("tokens/preprocess", 2, preprocess_inputs, preprocess_call,
               hint="special tokens map whole; numbers become one token per digit"))


# ---------------------------------------------------------------------------------------
# Part 2. Attention
# ---------------------------------------------------------------------------------------

def qkv(g, *shape_q, keys=None, values=None, dtype=F64):
    """(query, key, value) drawn from `g`; keys/values default to the query's shape."""
    keys = keys or shape_q
    values = values or keys
    return (inputs.randn(g, *shape_q, dtype=dtype), inputs.randn(g, *keys, dtype=dtype),
            inputs.randn(g, *values, dtype=dtype))


def loop_single_inputs(g):
    K, M = 5, 4
    return {"source": (linspace(-0.4, 0.6, K, M), linspace(-0.8, 0.5, K, M),
                       linspace(-0.3, 0.8, K, M)),
            "random": qkv(g, 7, 6)}


suite.add(Case(
    "attention/two_loop_single", 2, loop_single_inputs,
    lambda m, x, device: {k: m.scaled_dot_product_two_loop_single(*v) for k, v in x.items()},
    tol=EXACT_TOL,
    hint="scores[i, j] = query[i] . key[j] / sqrt(M), softmax over j, then times value; "
         "create the score matrix in the inputs' dtype (they are float64 here)"))


def loop_batch_inputs(g):
    N, K, M = 2, 5, 4
    return {"source": (linspace(-0.4, 0.6, N, K, M), linspace(-0.8, 0.5, N, K, M),
                       linspace(-0.3, 0.8, N, K, M)),
            "random": qkv(g, 3, 6, 8), "one": qkv(g, 1, 4, 5)}  # a batch of one


suite.add(Case(
    "attention/two_loop_batch", 2, loop_batch_inputs,
    lambda m, x, device: {k: m.scaled_dot_product_two_loop_batch(*v) for k, v in x.items()},
    tol=EXACT_TOL, hint="same as the single version, one score per batch element"))


def no_loop_inputs(g):
    base = loop_batch_inputs(g)
    base["cross"] = qkv(g, 3, 4, 8, keys=(3, 7, 8), values=(3, 7, 5))
    base["one_cross"] = qkv(g, 1, 3, 6, keys=(1, 5, 6), values=(1, 5, 2))
    return base


def no_loop_call(m, x, device):
    out = {}
    for key, (q, k, v) in x.items():
        out[key], out[key + "_weights"] = m.scaled_dot_product_no_loop_batch(q, k, v)
    return out


suite.add(Case(
    "attention/no_loop_batch", 2, no_loop_inputs, no_loop_call, tol=EXACT_TOL,
    properties=[Property(lambda o: torch.allclose(o["cross_weights"].sum(-1),
                                                  torch.ones(3, 4, dtype=F64), atol=1e-9),
                         "attention weights do not sum to 1 over the keys",
                         "weights sum to 1")],
    hint="return (output, weights); weights is softmax over the last (key) dimension"))


def fixed_attention_inputs(g):
    q = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]], dtype=F64).view(1, 2, 3)
    k = torch.eye(3, dtype=F64).view(1, 3, 3)
    v = torch.tensor([[3.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 7.0]], dtype=F64).view(1, 3, 3)
    return {"q": q, "k": k, "v": v, "mask": torch.tensor([[0, 0, 1]]).bool(),
            "random": qkv(g, 3, 5, 7, keys=(3, 11, 7)),
            "float32": qkv(g, 2, 4, 6, keys=(2, 5, 6), dtype=torch.float32)}


def fixed_attention_call(m, x, device):
    return {"plain": m.scaled_dot_product_attention(x["q"], x["k"], x["v"]),
            "masked": m.scaled_dot_product_attention(x["q"], x["k"], x["v"], x["mask"]),
            "random": m.scaled_dot_product_attention(*x["random"]),
            "float32": m.scaled_dot_product_attention(*x["float32"])}


suite.add(Case("attention/vectorized", 2, fixed_attention_inputs, fixed_attention_call,
               tol=SOFTMAX_TOL,
               hint="no loops: bmm or einsum, scale by 1/sqrt(d_head); the output keeps v's "
                    "dtype (float32 in, float32 out)"))


def key_padding_inputs(g):
    n, t, s, d = 6, 5, 7, 8
    x = {"q": randn(g, n, t, d), "k": randn(g, n, s, d), "v": randn(g, n, s, d),
         "noise": randn(g, n, s, d, scale=100.0), "mask": padding_mask(g, n, s)}
    # A batch of one whose queries and keys have the same length, with some padding.
    x["one"] = qkv(g, 1, 6, 8) + (padding_mask(g, 1, 6, padded=True),)
    return x


def key_padding_call(m, x, device):
    mask = x["mask"]
    # Changing the keys and values of padded positions must not change anything.
    k2 = torch.where(mask[..., None], x["noise"], x["k"])
    v2 = torch.where(mask[..., None], x["noise"], x["v"])
    return {"bool": m.scaled_dot_product_attention(x["q"], x["k"], x["v"], mask),
            "uint8": m.scaled_dot_product_attention(x["q"], x["k"], x["v"], mask.to(torch.uint8)),
            "int64": m.scaled_dot_product_attention(x["q"], x["k"], x["v"], mask.long()),
            "perturbed": m.scaled_dot_product_attention(x["q"], k2, v2, mask),
            "one": m.scaled_dot_product_attention(*x["one"])}


suite.add(Case(
    "attention/key_padding_mask", 3, key_padding_inputs, key_padding_call, tol=SOFTMAX_TOL,
    properties=[Property(lambda o: torch.allclose(o["bool"], o["perturbed"], rtol=0, atol=1e-6),
                         "padded keys still get weight: changing them changed the output "
                         "(1 = pad must get exactly zero weight)", "padded keys are ignored")],
    hint="scores of padded keys (key_padding_mask true, whatever its dtype) must be -inf before "
         "the softmax"))


def causal_inputs(g):
    n, t, d = 4, 6, 8
    cut = int(torch.randint(1, t - 1, (1,), generator=g))
    return {"q": randn(g, n, t, d), "k": randn(g, n, t, d), "v": randn(g, n, t, d),
            "noise": randn(g, n, t, d, scale=10.0), "cut": torch.tensor(cut),
            "mask": padding_mask(g, n, t)}


def causal_call(m, x, device):
    cut = int(x["cut"])
    k2, v2 = x["k"].clone(), x["v"].clone()
    k2[:, cut:], v2[:, cut:] = x["noise"][:, cut:], x["noise"][:, cut:]  # change the future
    return {"out": m.scaled_dot_product_attention(x["q"], x["k"], x["v"], causal=True),
            "changed": m.scaled_dot_product_attention(x["q"], k2, v2, causal=True),
            "masked": m.scaled_dot_product_attention(x["q"], x["k"], x["v"], x["mask"], True),
            "one": m.scaled_dot_product_attention(x["q"][:1], x["k"][:1], x["v"][:1],
                                                  x["mask"][:1], True),
            "cut": x["cut"]}


suite.add(Case(
    "attention/causal", 3, causal_inputs, causal_call, tol=SOFTMAX_TOL,
    properties=[Property(same_prefix("out", "changed", "cut"),
                         "with causal=True, position t changed when keys after t changed: "
                         "the mask lets queries see the future", "causal")],
    hint="query i may attend to keys j <= i: mask the strict upper triangle"))


# ---------------------------------------------------------------------------------------
# Part 3. Multi-head attention, checked against torch.nn.MultiheadAttention
# ---------------------------------------------------------------------------------------

D_MODEL, N_HEADS = 32, 4
MHA_WEIGHT_SCALE = 0.2  # projections of unit inputs of std ~1: attention far from uniform


def mha_inputs(g, d=D_MODEL, heads=N_HEADS, batch=4, tgt=6, src=6, masked=False):
    ref = nn.MultiheadAttention(d, heads, batch_first=True)
    x = {"d_model": d, "n_heads": heads, "state": random_state(ref, g, MHA_WEIGHT_SCALE),
         "q": randn(g, batch, tgt, d), "k": randn(g, batch, src, d), "v": randn(g, batch, src, d)}
    if masked:  # distinct lengths: a mask row applied to the wrong (batch, head) shows
        x["mask"] = padding_mask(g, batch, src, distinct=batch < src)
    return x


def mha_call_one(m, x, device):
    d, heads = x["d_model"], x["n_heads"]
    mha = load_state(m.MultiheadAttention(d, heads), mha_state("", x["state"], d), device, F64)
    with torch.no_grad():
        if "mask" in x:
            return mha(x["q"], x["k"], x["v"], key_padding_mask=x["mask"], causal=True)
        return mha(x["q"], x["k"], x["v"])


def mha_call(m, x, device):
    return ({k: mha_call_one(m, v, device) for k, v in x.items()} if "state" not in x
            else mha_call_one(m, x, device))


suite.add(Case("mha/self_attention", 3, mha_inputs, mha_call, tol=SOFTMAX_TOL,
               hint="head h owns channels h*d_head..(h+1)*d_head of each projection"))
suite.add(Case("mha/cross_lengths", 2, lambda g: mha_inputs(g, tgt=5, src=3), mha_call,
               tol=SOFTMAX_TOL,
               hint="queries and keys may have different lengths"))
suite.add(Case("mha/padding_and_causal", 3, lambda g: mha_inputs(g, masked=True), mha_call,
               tol=SOFTMAX_TOL,
               hint="repeat the (B, S) mask once per head, in the same (batch, head) order"))
suite.add(Case(
    "mha/other_sizes", 2,
    lambda g: {"three_heads_batch_of_one": mha_inputs(g, d=24, heads=3, batch=1, tgt=5, src=5,
                                                      masked=True),
               "eight_heads": mha_inputs(g, d=32, heads=8, batch=2, tgt=3, src=7)},
    mha_call, tol=SOFTMAX_TOL,
    hint="use the module's own number of heads and head width everywhere: nothing may assume 4 "
         "heads of width 8, or a batch larger than one"))


# ---------------------------------------------------------------------------------------
# Part 4. Layer norm, feed-forward, positions
# ---------------------------------------------------------------------------------------

def layer_norm_inputs(g):
    return {"x": randn(g, 3, 5, 16, scale=3.0) + 2.0, "weight": randn(g, 16) + 1.0,
            "bias": randn(g, 16),
            # variance ~1e-6, below eps: where eps goes (inside the square root) matters
            "low_variance": randn(g, 2, 16, scale=1e-3) + 2.0,
            "source": linspace(-0.4, 0.6, 2, 4)}


def layer_norm_call(m, x, device):
    ln = load_state(m.LayerNorm(16), {"weight": x["weight"], "bias": x["bias"]}, device, F64)
    with torch.no_grad():
        return {"random": ln(x["x"]), "low_variance": ln(x["low_variance"]),
                "source": m.LayerNorm(4, eps=1e-10).to(F64)(x["source"])}


suite.add(Case("layernorm/vs_torch", 2, layer_norm_inputs, layer_norm_call, tol=EXACT_TOL,
               hint="normalize over the last dim with the population variance (unbiased=False); "
                    "eps goes inside the square root"))


def ffn_inputs(g):
    return {"state": {"fc1.weight": randn(g, 24, 8), "fc1.bias": randn(g, 24),
                      "fc2.weight": randn(g, 8, 24), "fc2.bias": randn(g, 8)},
            "x": randn(g, 2, 5, 8)}


def ffn_call(m, x, device):
    with torch.no_grad():
        return load_state(m.FeedForward(8, 24), x["state"], device, F64)(x["x"])


suite.add(Case("ffn/forward", 1, ffn_inputs, ffn_call, tol=EXACT_TOL,
               hint="fc2 of the ReLU of fc1"))


# float32 by contract: float32 rounding of angles up to 49 radians is ~5e-6 of the scale
POSITION_SIZES = [(4, 4), (5, 3), (1, 6), (50, 64)]  # (positions, d_model): odd, one row, big


def position_sizes(g):
    """The small tables' sizes, then a one-row table and a large one of drawn sizes (the
    public set keeps the source's four; a hidden table is never a public one)."""
    def draw(low, high):
        return int(torch.randint(low, high, (), generator=g))
    return {"sizes": POSITION_SIZES[:2] + [(1, 2 * draw(4, 12)),
                                           (draw(40, 61), 2 * draw(24, 40) + 1)]}


def positions_call(m, x, device):
    return {f"{p}x{d}": m.sinusoidal_positions(p, d) for p, d in x["sizes"]}


suite.add(Case(
    "positions/sinusoidal", 2, position_sizes, positions_call,
    source_inputs=lambda: {"sizes": list(POSITION_SIZES)}, tol=1e-4,
    hint="each sin/cos pair (2i, 2i+1) shares the frequency 1/10000^(2i/d_model)"))


def make_positions_inputs(g):
    ids = torch.randint(0, 16, (3, 7), generator=g)
    return {"ids": ids.masked_fill(padding_mask(g, 3, 7), PAD)}


def make_positions_call(m, x, device):
    model = m.Transformer(17, PAD, EOS, 16, 1, 8, 2, 16, 0.0)
    ids = x["ids"]
    return {"int64": model.make_positions(ids, ids.eq(PAD)),
            "int32": model.make_positions(ids.int(), ids.eq(PAD)),
            "one": model.make_positions(ids[:1], ids[:1].eq(PAD))}


suite.add(Case("positions/make_positions", 1, make_positions_inputs, make_positions_call,
               hint="0..L-1 in every row, same shape and dtype as input_ids (B = 1 too)"))


# ---------------------------------------------------------------------------------------
# Part 5. Encoder and decoder layers, against torch.nn.Transformer*Layer
# ---------------------------------------------------------------------------------------

D_FFN = 64
LAYER_WEIGHT_SCALE = 0.15


def torch_layer(decoder: bool, d=D_MODEL, heads=N_HEADS, d_ffn=D_FFN) -> nn.Module:
    cls = nn.TransformerDecoderLayer if decoder else nn.TransformerEncoderLayer
    return cls(d, heads, dim_feedforward=d_ffn, dropout=0.0, batch_first=True)


def encoder_inputs_one(g, d=D_MODEL, heads=N_HEADS, d_ffn=D_FFN, batch=4, length=5):
    return {"sizes": [d, heads, d_ffn],
            "state": random_state(torch_layer(False, d, heads, d_ffn), g, LAYER_WEIGHT_SCALE),
            "x": randn(g, batch, length, d),
            "mask": padding_mask(g, batch, length, torch.long)}  # an int64 mask, as in the source


def encoder_inputs(g):
    return {"default": encoder_inputs_one(g),
            "other_sizes_batch_of_one": encoder_inputs_one(g, 24, 2, 40, batch=1, length=6)}


def encoder_call(m, x, device):
    out = {}
    for key, one in x.items():
        d, heads, d_ffn = one["sizes"]
        layer = load_state(m.TransformerLayer(False, d, heads, d_ffn, 0.0),
                           layer_state(one["state"], d, False), device, F64)
        with torch.no_grad():
            out[key] = layer(one["x"], one["mask"])
    return out


suite.add(Case("layer/encoder_vs_torch", 3, encoder_inputs, encoder_call, tol=SOFTMAX_TOL,
               hint="post-LN: x = LN(x + dropout(sublayer(x))) around attention and the FFN"))


def decoder_inputs(g):
    x = {"state": random_state(torch_layer(True), g, LAYER_WEIGHT_SCALE),
         "x": randn(g, 3, 6, D_MODEL), "memory": randn(g, 3, 4, D_MODEL),
         "mask": padding_mask(g, 3, 6), "memory_mask": padding_mask(g, 3, 4),
         "noise": randn(g, 3, 6, D_MODEL)}
    x["cut"] = torch.randint(1, 5, (), generator=g)
    return x


def changed_future(x):
    cut = int(x["cut"])
    changed = x["x"].clone()
    changed[:, cut:] = x["noise"][:, cut:]
    return changed


def decoder_call(m, x, device):
    layer = load_state(m.TransformerLayer(True, D_MODEL, N_HEADS, D_FFN, 0.0),
                       layer_state(x["state"], D_MODEL, True), device, F64)
    with torch.no_grad():
        def run(inp):
            return layer(inp, x["mask"], x["memory"], x["memory_mask"])
        return {"out": run(x["x"]), "changed": run(changed_future(x)), "cut": x["cut"]}


suite.add(Case(
    "layer/decoder_vs_torch", 4, decoder_inputs, decoder_call, tol=SOFTMAX_TOL,
    properties=[Property(same_prefix("out", "changed", "cut"),
                         "the decoder layer sees the future: output at t changed when inputs "
                         "after t changed (self-attention needs causal=True)", "causal")],
    hint="self-attention (causal) -> cross-attention on encoder_out -> FFN, each post-LN"))


def dropout_inputs(g):
    return {"encoder": encoder_inputs_one(g), "decoder": decoder_inputs(g)}


def dropout_call(m, x, device):
    """Both layers with p_drop = 1.0: in training mode every dropout zeroes its input, so the
    output is exact (x = LN(x + 0) per sublayer) and shows where each dropout sits; in eval
    mode dropout is off."""
    enc, dec = x["encoder"], x["decoder"]
    out = {}
    for mode in ("train", "eval"):
        encoder = load_state(m.TransformerLayer(False, D_MODEL, N_HEADS, D_FFN, 1.0),
                             layer_state(enc["state"], D_MODEL, False), device, F64)
        decoder = load_state(m.TransformerLayer(True, D_MODEL, N_HEADS, D_FFN, 1.0),
                             layer_state(dec["state"], D_MODEL, True), device, F64)
        encoder.train(mode == "train"), decoder.train(mode == "train")
        with torch.no_grad():
            out[f"encoder_{mode}"] = encoder(enc["x"], enc["mask"])
            out[f"decoder_{mode}"] = decoder(dec["x"], dec["mask"], dec["memory"],
                                             dec["memory_mask"])
    return out


suite.add(Case(
    "layer/dropout", 2, dropout_inputs, dropout_call, tol=SOFTMAX_TOL,
    hint="each sublayer's output goes through its own dropout before the residual add, "
         "LN(x + dropout(sublayer(x))): not after the LayerNorm, not on the attention weights; "
         "dropout acts in training mode only"))


# ---------------------------------------------------------------------------------------
# Part 6. The encoder-decoder model and greedy decoding
# ---------------------------------------------------------------------------------------

MODEL = dict(n_words=len(SOURCE_VOCAB), pad_id=PAD, eos_id=EOS, max_len=16, n_layers=2,
             d_model=D_MODEL, n_heads=N_HEADS, d_ffn=D_FFN, p_drop=0.0)


def model_state(g, eos_bias: float = 0.0) -> dict:
    """Random float64 weights under the assignment's parameter names (the contract).

    eos_bias raises EOS's output bias, so that greedy decoding ends rows early. PAD's output
    bias is very negative: a trained model never predicts PAD, and what a decoder does after
    generating PAD itself (mask it as padding or not) is not fixed by the contract."""
    d = D_MODEL
    state = {"emb_word.weight": randn(g, MODEL["n_words"], d, scale=0.5),
             "emb_pos.weight": randn(g, MODEL["max_len"], d, scale=0.5),
             "emb_ln.weight": 1 + randn(g, d, scale=0.1), "emb_ln.bias": randn(g, d, scale=0.1),
             "lm_head.bias": randn(g, MODEL["n_words"], scale=0.1)}
    state["lm_head.bias"][EOS] += eos_bias
    state["lm_head.bias"][PAD] -= 30.0
    state["lm_head.weight"] = state["emb_word.weight"]
    for side, decoder in (("encoder_layers", False), ("decoder_layers", True)):
        for i in range(MODEL["n_layers"]):
            torch_state = random_state(torch_layer(decoder), g, LAYER_WEIGHT_SCALE)
            state.update(prefixed(f"{side}.{i}.", layer_state(torch_state, d, decoder)))
    return state


def model_inputs(g):
    B, S, T = 4, 9, 5
    ids = torch.randint(0, 16, (B, S), generator=g)
    ids = ids.masked_fill(padding_mask(g, B, S), PAD)
    labels = torch.randint(0, 16, (B, T), generator=g)
    labels[0, -2:] = -100  # ignored by the loss (and fed as PAD): only at the end
    cut = torch.randint(1, T - 1, (), generator=g)
    changed = labels.clone()
    changed[:, int(cut) + 1:] = torch.randint(0, 16, (B, T - int(cut) - 1), generator=g)
    changed[labels.eq(-100)] = -100  # a label after a -100 would follow a PAD input
    return {"state": model_state(g), "ids": ids, "labels": labels, "changed": changed, "cut": cut}


def build_model(m, x, device):
    return load_state(m.Transformer(**MODEL), x["state"], device, F64)


def graded_logits(logits, labels):
    """The logits the contract fixes: those at positions whose label is -100 (ignored by the
    loss, fed as PAD) are set to 0, on both sides."""
    return logits.masked_fill(labels.eq(-100)[..., None], 0.0)


def loss_gradient(model, ids, labels) -> torch.Tensor:
    """d loss / d lm_head.bias through the student's forward (zeros when the loss is cut from
    the graph): the loss trains the model, so its gradient is graded as well as its value."""
    model.zero_grad(set_to_none=True)
    _, loss = model(ids, labels)
    if isinstance(loss, torch.Tensor) and loss.requires_grad:
        loss.backward()
    grad = model.lm_head.bias.grad
    return torch.zeros_like(model.lm_head.bias) if grad is None else grad.detach().clone()


def model_call(m, x, device):
    model = build_model(m, x, device)
    dropped = load_state(m.Transformer(**dict(MODEL, p_drop=1.0)), x["state"], device, F64)
    with torch.no_grad():
        logits, loss = model(x["ids"], x["labels"])
        changed, _ = model(x["ids"], x["changed"])
        one_logits, one_loss = model(x["ids"][1:2], x["labels"][1:2])  # a batch of one
        # p_drop = 1.0 in training mode: dropout zeroes every sublayer output, nothing else
        dropout_logits, _ = dropped.train()(x["ids"], x["labels"])
    # Decoder input t is label t-1, so logits up to cut+1 may only depend on labels <= cut.
    # The loss's dtype (float32 or float64) is the student's choice: it is compared in float64.
    return {"logits": graded_logits(logits, x["labels"]), "loss": loss.to(F64),
            "changed": graded_logits(changed, x["changed"]), "cut": x["cut"] + 1,
            "one_logits": one_logits, "one_loss": one_loss.to(F64),
            "dropout_logits": graded_logits(dropout_logits, x["labels"]),
            "loss_gradient": loss_gradient(model, x["ids"], x["labels"]),
            "lm_head_tied": torch.tensor(model.lm_head.weight is model.emb_word.weight)}


def shift_right_inputs(g):
    labels = torch.randint(0, 15, (4, 6), generator=g)
    lengths = torch.randint(2, 7, (4,), generator=g)
    return {"labels": labels.masked_fill(torch.arange(6)[None, :] >= lengths[:, None], -100)}


suite.add(Case(
    "model/shift_right", 1, shift_right_inputs,
    lambda m, x, device: {"batch": m.Transformer(**MODEL).shift_right(x["labels"]),
                          "one": m.Transformer(**MODEL).shift_right(x["labels"][-1:])},
    hint="EOS, then labels[:, :-1], with every -100 replaced by PAD"))


suite.add(Case(
    "model/forward", 4, model_inputs, model_call, tol=SOFTMAX_TOL,
    properties=[Property(same_prefix("logits", "changed", "cut"),
                         "the model is not causal: logits at t changed when labels after t "
                         "changed", "causal")],
    hint="logits: the decoder input is EOS followed by the labels but the last, -100 replaced "
         "by PAD, and lm_head is tied; loss: the sum of the cross-entropies of the positions "
         "whose label is not -100 over their number (not over the batch), kept in the graph"))


GREEDY_EOS_BIAS = 30.0  # the second model says EOS first: what follows EOS is graded too


def decode_inputs(g):
    ids = torch.randint(0, 16, (6, 9), generator=g)
    ids = ids.masked_fill(padding_mask(g, 6, 9), PAD)
    return {"state": model_state(g), "ids": ids, "ending_state": model_state(g, GREEDY_EOS_BIAS)}


def in_training_mode(m, state, device):
    """The model with p_drop = 1.0, handed over in training mode: decoding must switch it to
    eval mode (with dropout on, every sublayer output would be zero)."""
    return load_state(m.Transformer(**dict(MODEL, p_drop=1.0)), state, device, F64).train()


def decode_call(m, x, device):
    model = build_model(m, x, device)
    ending = load_state(m.Transformer(**MODEL), x["ending_state"], device, F64)
    training = in_training_mode(m, x["state"], device)
    return {"batch": m.greedy_decode(model, x["ids"], 8),
            "one": m.greedy_decode(model, x["ids"][:1], 8),
            "ends_at_once": m.greedy_decode(ending, x["ids"][:3], 4),
            "from_training_mode": m.greedy_decode(training, x["ids"], 8),
            "left_in_eval_mode": torch.tensor(not training.training)}


suite.add(Case("model/greedy_decode", 2, decode_inputs, decode_call,
               hint="start from EOS, append argmax of the last position, PAD after EOS; "
                    "model.eval() first (no dropout while decoding)"))


# ---------------------------------------------------------------------------------------
# Training: the arithmetic task, scored on held-out problems
# ---------------------------------------------------------------------------------------
#
# The child gets the training problems only (token ids, as uint8) and trains the student's
# Transformer for a fixed number of steps (the same work on any machine, at any load);
# `call` returns the trained state_dict. `evaluate` runs with the REFERENCE module in a
# separate sandbox: it builds the reference Transformer with the same configuration, loads
# the weights strictly and runs the reference `greedy_decode` on the held-out problems,
# which `reference` derives from the inputs (every problem that is not a training one) and
# which never reach the child. A row counts when all 5 answer tokens are right.

CPU_PROFILE = dict(model=dict(max_len=16, n_layers=2, d_model=64, n_heads=4, d_ffn=256,
                              p_drop=0.0),
                   steps=1000, batch_size=128, lr=2e-3, threads=1)
# Calibrated in-process (call -> weights -> reference evaluate -> judge): the reference
# reaches 0.998 held-out exact match on the public set (2040 problems); threshold 0.80.
MIN_ACCURACY = 0.80
ANSWER_LENGTH = 5  # sign, three digits, EOS


def training_tokens(text: str) -> list[int]:
    """Tokenization is graded above; the training case uses the oracle's tokenizer (the
    inputs and the held-out split are built in the trusted parent only)."""
    from grader.authoring import oracle_module
    return oracle_module("transformer").reference_tokens(text)


def arithmetic_inputs(g):
    """A seeded 90/10 split of all problems: the child gets the training 90% only."""
    train, _ = arith.split_problems(held_out=0.1,
                                    seed=int(torch.randint(1000, (), generator=g)))
    train_ids, train_labels = arith.encode_problems(train, training_tokens)
    return {"train_ids": train_ids.to(torch.uint8), "train_labels": train_labels.to(torch.uint8)}


def arithmetic_held_out(x):
    """Every problem that is not among the training inputs, with its answer."""
    seen = {arith.parse_expression([SOURCE_VOCAB[i] for i in row])
            for row in x["train_ids"].tolist()}
    held_out = [p for p in arith.all_problems() if p not in seen]
    ids, labels = arith.encode_problems(held_out, training_tokens)
    return {"data": {"ids": ids.to(torch.uint8)}, "labels": labels}


def progress_hook():
    """The sandbox's progress reporter when it has one (a no-op outside the sandbox)."""
    from grader import sandbox
    return getattr(sandbox, "report_progress", None)


def arithmetic_call(m, x, device):
    from dlkit.train import train_seq2seq
    p = CPU_PROFILE
    with torch_threads(p["threads"]):
        model = m.Transformer(len(SOURCE_VOCAB), PAD, EOS, **p["model"])
        train_seq2seq(model, x["train_ids"].long(), x["train_labels"].long(), steps=p["steps"],
                      batch_size=p["batch_size"], lr=p["lr"], device=device, progress=False,
                      on_step=progress_hook())
        return trained_state(model)


def arithmetic_evaluate(ref, weights, data, device):
    """Run by the grader with the reference module: greedy answers of the trained weights."""
    from dlkit.train import predict_in_batches
    model = load_trained(ref.Transformer(len(SOURCE_VOCAB), PAD, EOS, **CPU_PROFILE["model"]),
                         weights).to(device).eval()
    return predict_in_batches(lambda ids: ref.greedy_decode(model, ids, ANSWER_LENGTH),
                              data["ids"].long(), device=device)


# Judged by work: 1000 steps on one thread. The reference needs 56 s of CPU time in process
# (measured under a load of ~7 on this 2-core machine: 315 s of wall time; an idle run once
# took 83 s of wall time, and 385 s loaded about 4.5x). The case may use 250 s of CPU (4.5x
# the first, 3x the second); 1500 s of wall time is a backstop (18x the idle time), not a
# budget: a loaded machine never zeroes a good model.
suite.add(Case(
    "train/arithmetic", 10, arithmetic_inputs, arithmetic_call, reference=arithmetic_held_out,
    evaluate=arithmetic_evaluate, min_accuracy=MIN_ACCURACY, time_limit=1500.0,
    cpu_time=250.0,
    hint="train the other parts first: this case trains your Transformer from scratch"))


# ---------------------------------------------------------------------------------------
# Part 7. Summarization: batches, the masked loss, decoding that stops at EOS
# ---------------------------------------------------------------------------------------
#
# Token ids here are random; every row has its own length, so padding applied to the wrong
# row or the wrong side shows. Some rows are longer than the maximum lengths (they are cut,
# then get EOS), and one batch has a single row.

S_PAD, S_EOS = 0, 1  # T5's ids, as in the summarization tokenizer


def token_rows(g, n, low, high, vocab=50):
    lengths = torch.randint(low, high + 1, (n,), generator=g).tolist()
    return [torch.randint(3, vocab, (k,), generator=g).tolist() for k in lengths]


def collate_inputs(g):
    return {"documents": token_rows(g, 5, 1, 12), "summaries": token_rows(g, 5, 1, 7),
            "one_document": token_rows(g, 1, 2, 6), "one_summary": token_rows(g, 1, 1, 4),
            "long_document": token_rows(g, 2, 12, 15), "long_summary": token_rows(g, 2, 8, 9)}


def collate_call(m, x, device):
    out = {}
    for key, docs, sums in (("batch", x["documents"], x["summaries"]),
                            ("one", x["one_document"], x["one_summary"]),
                            ("cut", x["long_document"], x["long_summary"])):
        batch = m.collate_summaries(docs, sums, S_PAD, S_EOS, 10, 6)
        for name in ("input_ids", "labels", "decoder_input_ids"):
            out[f"{key}_{name}"] = batch[name]
    return out


suite.add(Case(
    "summarize/collate", 3, collate_inputs, collate_call,
    hint="cut to max_len - 1 and append EOS; pad documents with pad_id and labels with -100; "
         "decoder_input_ids: EOS, then the labels but the last, -100 replaced by pad_id"))


def masked_loss_inputs(g):
    B, T, V = 4, 6, 11
    labels = torch.randint(0, V, (B, T), generator=g)
    lengths = torch.randperm(T, generator=g)[:B] + 1  # distinct lengths, one may be full
    labels = labels.masked_fill(torch.arange(T)[None, :] >= lengths[:, None], -100)
    return {"logits": randn(g, B, T, V, scale=2.0), "labels": labels,
            "logits32": inputs.randn(g, 2, 5, 7, scale=2.0),
            "labels32": torch.tensor([[1, 2, 3, -100, -100], [4, 5, 6, 0, 1]])}


def masked_loss_call(m, x, device):
    # float32 or float64 for float64 logits is the student's choice: compared in float64
    _, (gradient,) = value_and_gradients(lambda z: m.masked_token_loss(z, x["labels"]),
                                         x["logits"])
    return {"float64": m.masked_token_loss(x["logits"], x["labels"]).to(F64),
            "gradient": gradient,
            "one": m.masked_token_loss(x["logits"][:1], x["labels"][:1]).to(F64),
            "float32": m.masked_token_loss(x["logits32"], x["labels32"])}


suite.add(Case(
    "summarize/masked_loss", 2, masked_loss_inputs, masked_loss_call, tol=SOFTMAX_TOL,
    hint="sum of the cross-entropies of positions whose label is not -100, over their number "
         "(not over the batch or every position); keep it a tensor of the graph"))


# Rows that end at different steps are rare with random weights: EOS's bias +3 and a 10x
# stronger cross-attention make a draw qualify after 1-10 tries (measured on 10 seeds).
GREEDY_STOP = dict(eos_bias=3.0, cross_scale=10.0, max_new_tokens=12, rows=4)


def greedy_stop_inputs(g):
    """Built in the instructor's process only (fixtures, audits): the weights are redrawn
    until the oracle's greedy rows end at different steps."""
    from grader.authoring import oracle_module
    rows = GREEDY_STOP["rows"]
    ids = torch.randint(0, 16, (rows, 9), generator=g)
    ids = ids.masked_fill(padding_mask(g, rows, 9), PAD)
    return {"ids": ids, "state": oracle_module("transformer").varied_endings_state(g, ids)}


# output: (EOS bias shift, rows, max_new_tokens); +30 ends every row at once, -60 never
GREEDY_STOP_CALLS = {"batch": (0.0, slice(None), GREEDY_STOP["max_new_tokens"]),
                     "one": (0.0, slice(1, 2), GREEDY_STOP["max_new_tokens"]),
                     "ends_at_once": (30.0, slice(0, 3), 5),
                     "never_ends": (-60.0, slice(0, 2), 4)}


def eos_shifted(state: dict, shift: float) -> dict:
    state = dict(state)
    state["lm_head.bias"] = state["lm_head.bias"].clone()
    state["lm_head.bias"][EOS] += shift
    return state


def greedy_stop_call(m, x, device):
    out = {}
    for key, (shift, rows, steps) in GREEDY_STOP_CALLS.items():
        model = load_state(m.Transformer(**MODEL), eos_shifted(x["state"], shift), device, F64)
        out[key] = m.greedy_summarize(model, x["ids"][rows], steps)
    training = in_training_mode(m, x["state"], device)
    out["from_training_mode"] = m.greedy_summarize(training, x["ids"],
                                                   GREEDY_STOP["max_new_tokens"])
    out["left_in_eval_mode"] = torch.tensor(not training.training)
    return out


suite.add(Case(
    "summarize/greedy_stops", 2, greedy_stop_inputs, greedy_stop_call,
    hint="greedy_decode's loop (model.eval() first) with PAD after EOS, and a break once every "
         "row has produced EOS"))


# A few float64 steps of `train_summarizer` on random pairs: the same batches, losses and
# updates as the reference (the docstring fixes the sampler, the optimiser and the
# schedule), on_step counting from 1, the model left in eval mode. The loop trains a smooth
# stand-in for encode and decode: a real Transformer (ReLU, LayerNorm, AdamW dividing tiny
# gradients by their size) grew float32 rounding in the loss ~100x in 4 steps, and its own
# mistakes (eps outside the sqrt) reached the losses at 1e-5: no tolerance was 10x from both.
TRAIN_LOOP = dict(steps=4, batch_size=3, lr=1e-2, max_source_len=10, max_target_len=6,
                  warmup=2)
# A float32 loss moves the losses by ~1e-7 of their scale; the closest loop mistake by more
# than 1e-3 (audit, 20 seeds).
TRAIN_LOOP_TOL = 1e-5


class SmoothSeq2Seq(nn.Module):
    """summarize/train_loop's stand-in for `Transformer.encode` and `Transformer.decode`.

    encode: ids (B, S) -> (embeddings (B, S, d), padding mask (B, S));
    decode: ids (B, T), memory, mask -> logits (B, T, n_words) from tanh of each token's
    embedding plus the mean of the unmasked memory. Smooth, so that rounding stays small.
    """

    def __init__(self, n_words: int, d_model: int, pad_id: int):
        super().__init__()
        self.pad_id = pad_id
        self.emb = nn.Embedding(n_words, d_model)
        self.mix = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, n_words)

    def encode(self, input_ids):
        return self.emb(input_ids), input_ids.eq(self.pad_id)

    def decode(self, decoder_input_ids, encoder_out, encoder_padding_mask):
        keep = (~encoder_padding_mask).unsqueeze(-1).to(encoder_out.dtype)       # (B, S, 1)
        memory = (encoder_out * keep).sum(1, keepdim=True) / keep.sum(1, keepdim=True).clamp(min=1)
        return self.out(torch.tanh(self.mix(self.emb(decoder_input_ids) + memory)))  # (B, T, V)


def stand_in_state(g) -> dict:
    n, d = MODEL["n_words"], D_MODEL
    return {"emb.weight": randn(g, n, d, scale=0.5), "mix.weight": randn(g, d, d, scale=0.3),
            "mix.bias": randn(g, d, scale=0.1), "out.weight": randn(g, n, d, scale=0.5),
            "out.bias": randn(g, n, scale=0.1)}


def train_loop_inputs(g):
    return {"stand_in": stand_in_state(g), "documents": token_rows(g, 10, 1, 12, vocab=EOS),
            "summaries": token_rows(g, 10, 1, 7, vocab=EOS),
            "seed": torch.randint(0, 1000, (), generator=g)}


def loop_model(m, x, device):
    """The student's Transformer (its pad_id, eos_id, shift_right and forward) whose encode
    and decode are the stand-in's; its own weights get no gradient, so AdamW leaves them."""
    model = m.Transformer(**MODEL)
    stand_in = load_state(SmoothSeq2Seq(MODEL["n_words"], D_MODEL, PAD), x["stand_in"],
                          device, F64)
    model.add_module("stand_in", stand_in)
    model.encode, model.decode = stand_in.encode, stand_in.decode
    return model.to(device).eval()


def train_loop_call(m, x, device):
    model = loop_model(m, x, device)
    calls = []
    losses = m.train_summarizer(model, x["documents"], x["summaries"], **TRAIN_LOOP,
                                seed=int(x["seed"]), device=device,
                                on_step=lambda step, steps, loss: calls.append(
                                    (int(step), int(steps), float(loss))))
    return {"losses": torch.tensor([float(v) for v in losses], dtype=F64),
            "on_step": torch.tensor([[step, steps] for step, steps, _ in calls]).reshape(-1, 2),
            "on_step_losses": torch.tensor([loss for *_, loss in calls], dtype=F64),
            "left_in_eval_mode": torch.tensor(not model.training),
            "stand_in_out_bias": model.stand_in.out.bias.detach().to(F64)}


suite.add(Case(
    "summarize/train_loop", 2, train_loop_inputs, train_loop_call, tol=TRAIN_LOOP_TOL,
    time_limit=120.0,  # torch.optim's first AdamW imports torch._dynamo: seconds of setup
    hint="(run on a small stand-in model that has the Transformer's encode and decode) "
         "draw each batch with dlkit.train.batches(len(documents), batch_size, "
         "Generator().manual_seed(seed)), collate, decode(encode), masked_token_loss, AdamW "
         "(weight decay 0.01), clip to norm 1, lr * warmup_cosine(step, steps, warmup); "
         "on_step(step, steps, loss) with step = 1 after the first step; model.eval() at the end"))


# ---------------------------------------------------------------------------------------
# Every part on another device than the CPU (the meta device: shapes, no values)
# ---------------------------------------------------------------------------------------

def device_inputs(g):
    ids = torch.randint(0, 15, (2, 7), generator=g).masked_fill(padding_mask(g, 2, 7), PAD)
    return {"q": randn(g, 2, 4, 8), "k": randn(g, 2, 5, 8), "mask": padding_mask(g, 2, 5),
            "x": randn(g, 2, 5, D_MODEL), "ids": ids,
            "labels": torch.randint(0, 15, (2, 4), generator=g)}


def device_call(m, x, device):
    """The parts with their inputs and modules on the meta device: a tensor made on the CPU
    (a causal mask without device=, positions, a `finished` flag) meets them and is named.
    `scaled_dot_product_attention` gets its key-padding mask on the CPU (its contract: it is
    moved), the modules get theirs on the meta device. Not here:
    the loop versions of attention (teaching code, graded on the CPU), tokenization and
    `collate_summaries` (lists in, CPU tensors out), `sinusoidal_positions` (no inputs) and
    the training loops (graded on the CPU). `greedy_summarize` is checked up to its first
    `bool(...)`, which needs values."""
    def layers():
        q, k, seq = elsewhere(x["q"]), elsewhere(x["k"]), elsewhere(x["x"])
        mask = elsewhere(x["mask"])
        encoder = m.TransformerLayer(False, D_MODEL, N_HEADS, D_FFN, 0.0).to(ELSEWHERE, F64)
        decoder = m.TransformerLayer(True, D_MODEL, N_HEADS, D_FFN, 0.0).to(ELSEWHERE, F64)
        return {"no_loop": m.scaled_dot_product_no_loop_batch(q, k, k),
                "attention": m.scaled_dot_product_attention(q, k, k, x["mask"], causal=True),
                "mha": m.MultiheadAttention(D_MODEL, N_HEADS).to(ELSEWHERE, F64)(
                    seq, seq, seq, mask, causal=True),
                "layernorm": m.LayerNorm(D_MODEL).to(ELSEWHERE, F64)(seq),
                "ffn": m.FeedForward(D_MODEL, D_FFN).to(ELSEWHERE, F64)(seq),
                "encoder": encoder(seq, mask), "decoder": decoder(seq, mask, seq, mask)}

    def model_on_meta():
        return m.Transformer(**MODEL).to(ELSEWHERE, F64)

    def model_parts():
        ids, labels, model = elsewhere(x["ids"]), elsewhere(x["labels"]), model_on_meta()
        logits, loss = model(ids, labels)
        return {"positions": model.make_positions(ids, ids.eq(PAD)),
                "shift_right": model.shift_right(labels), "logits": logits, "loss": loss,
                "masked_loss": m.masked_token_loss(logits, labels)}

    def decoding():
        return {"greedy": m.greedy_decode(model_on_meta(), elsewhere(x["ids"]), 3)}

    def summarizing():
        return {"greedy": m.greedy_summarize(model_on_meta(), elsewhere(x["ids"]), 3)}
    return device_checked(layers, model_parts, decoding, summarizing)


suite.add(Case(
    "device/meta", 2, device_inputs, device_call, seeded=False,
    hint="make new tensors (causal masks, positions, flags) on the inputs' device "
         "(device=q.device) and move a given key-padding mask there"))


# ---------------------------------------------------------------------------------------
# Training: summarizing numpy's and torch's docstrings, validation loss by the reference
# ---------------------------------------------------------------------------------------
#
# The corpus, its split and its SentencePiece tokenizer are `dlkit.summarize`'s (built here,
# cached under data/summarize/). The child gets the training pairs' ids only and runs the
# student's `train_summarizer` on the student's Transformer for a fixed number of steps;
# `evaluate` runs the REFERENCE collate, model and loss on the validation pairs, which only
# the expected values hold. The validation docstrings are in numpy's and torch's installed
# sources, which the sandbox can read: a submission could train on them on purpose (as it
# could generate the held-out arithmetic problems); only the evaluation is protected.

SUMMARIZE = dict(max_source_len=64, max_target_len=32,
                 model=dict(max_len=64, n_layers=2, d_model=64, n_heads=4, d_ffn=256,
                            p_drop=0.0),
                 steps=500, batch_size=32, lr=3e-3, warmup=50, threads=1)
# Calibrated in-process (call -> weights -> reference evaluate -> judge), 500 steps: the
# reference's validation loss 3.069 and 3.058 (generator seeds 0 and 1); the unigram
# distribution of the training summaries' tokens scores 5.64, the untrained model 7.64.
# 3.5 leaves 0.43 above the worst reference run and 2.1 below the unigram baseline.
# (Teacher-forced, in nats per summary token, EOS included; 246 validation summaries.)
MAX_SUMMARY_LOSS = 3.5


def summarize_split(name: str) -> dict:
    from dlkit import summarize
    corpus = summarize.docstring_corpus()
    tokenizer = summarize.load_tokenizer(corpus=corpus)
    return summarize.encode_pairs(tokenizer, summarize.corpus_splits(corpus)[name],
                                  SUMMARIZE["max_source_len"], SUMMARIZE["max_target_len"])


def summarize_inputs(g):
    """The training pairs' ids (flattened, int16) and the seed of the batch order."""
    return {**summarize_split("train"),
            "seed": torch.randint(0, 2**31 - 1, (), generator=g)}


def summarize_reference(x):
    """{"data": the validation pairs' ids}: they reach the evaluating sandbox only."""
    return {"data": summarize_split("validation")}


def summarize_call(m, x, device):
    from dlkit.summarize import VOCAB_SIZE, unflatten
    p = SUMMARIZE
    with torch_threads(p["threads"]):
        torch.manual_seed(0)
        model = m.Transformer(VOCAB_SIZE, S_PAD, S_EOS, **p["model"])
        m.train_summarizer(model, unflatten(x["documents"], x["document_lengths"]),
                           unflatten(x["summaries"], x["summary_lengths"]), steps=p["steps"],
                           batch_size=p["batch_size"], lr=p["lr"],
                           max_source_len=p["max_source_len"],
                           max_target_len=p["max_target_len"], warmup=p["warmup"],
                           seed=int(x["seed"]) % 1000, device=device, on_step=progress_hook())
        return trained_state(model)


def summarize_loss(ref, model, data, device) -> float:
    """Mean cross-entropy of every validation summary token (EOS included), teacher-forced."""
    from dlkit.summarize import teacher_forced_loss, unflatten
    return teacher_forced_loss(ref, model, unflatten(data["documents"], data["document_lengths"]),
                               unflatten(data["summaries"], data["summary_lengths"]),
                               SUMMARIZE["max_source_len"], SUMMARIZE["max_target_len"],
                               device=device)


def summarize_evaluate(ref, weights, data, device):
    """Run by the grader with the reference module: the validation loss of the weights."""
    from dlkit.summarize import VOCAB_SIZE
    model = load_trained(ref.Transformer(VOCAB_SIZE, S_PAD, S_EOS, **SUMMARIZE["model"]),
                         weights).to(device).eval()
    return torch.tensor(summarize_loss(ref, model, data, device), dtype=F64)


# Judged by work: 500 steps on one thread. The reference needs 53 s of CPU time in process
# (measured under a load of ~8 on this 2-core machine: 422 s of wall time; 141 s of wall
# time through the sandbox loaded about 4.5x). The case may use 240 s of CPU (4.5x); 1200 s
# of wall time is a backstop (over 20x the idle time), not a budget.
suite.add(Case(
    "summarize/train", 10, summarize_inputs, summarize_call,
    reference=summarize_reference, evaluate=summarize_evaluate, max_loss=MAX_SUMMARY_LOSS,
    time_limit=1200.0, cpu_time=240.0,
    hint="train the other parts first: this trains your Transformer with your collate, loss "
         "and train_summarizer; the grader measures the loss on held-out docstrings"))
