"""The graded cases of the `attention` warm-up assignment.

Two kinds of cases per exercise:

- `*/source`: the source exercise's own checks. Its modules are built right after
  `torch.manual_seed(seed)` in the documented order (q, k, v; the heads, then the output
  layer). The public set replays the source's seeds (42, 48, 14, 10) and input (the
  position table's 0.01 .. 5.12 rows), so its expected values are the numbers the source
  printed (tests/test_attention.py checks them to the printed 4 decimals); the autograder
  set and audits run the same construction under other seeds (and the position table at
  another width), so a hidden case never replays public inputs. They catch a wrong
  construction order, which the other cases cannot see. The inputs drawn after the modules
  are built here by replaying the same construction with `torch.nn.Linear`, so a student's
  extra random draw changes only the weights, never the inputs.
- the others: non-default and unequal sizes, cross lengths, batches of one, weights loaded by
  name from the inputs, and expected values from `torch.nn.functional.scaled_dot_product_attention`
  where it applies (`solutions/attention_oracles.py`, instructor side only), plus named
  properties (rows sum to 1, no weight on the future, causality,
  permutation equivariance).

Everything numeric runs in float64 (modules are built in float32 under the seed, as the source
does, and then converted with `.double()`). Correct float64 code lands near 1e-15; correct
code with a float32 constant (the scale as `torch.sqrt(torch.tensor(d_k, dtype=torch.float32))`,
an equivalent) lands near 1e-7; every known mistake moves an output by 1e-2 of its scale or
more. TOL = 1e-5 sits 100x above the first and 1000x below the second (the tolerance policy,
`python -m grader audit attention`). The one exception is the position table: its buffer is
float32 by contract (built with torch's default dtype, and its dtype is checked), so float32
formulas of a correct table differ from the float64-computed reference by up to ~1e-5 of its
scale; its tolerance, 1e-3, sits 100x above that, while every known mistake moves it by 0.1
or more.
"""
from functools import partial

import torch
from torch import nn

from grader import inputs, policy
from grader.cases import Case, Property, Suite
from grader.inputs import ELSEWHERE, device_checked, elsewhere, load_state

suite = Suite("attention")

# The library-shortcut policy (instructors: edit here). Per part, the library calls that would
# do its work; a case graded on that part loses its points when the part uses one of them
# (grader/policy.py). The part's docstring in solutions/attention.py says what is off limits.
suite.ban("attention", policy.ATTENTION, cases=["attention/"])
suite.ban("causal_attention", policy.ATTENTION, cases=["causal/attention"])
for _part, _cases in (("SelfAttention.forward", "selfattn/"), ("CrossAttention.forward", "cross/"),
                      ("MultiHeadedAttention.forward", "mha/"),
                      ("CausalSelfAttention.forward", "causal/module")):
    suite.ban(_part, policy.MULTI_HEAD, cases=[_cases])

# Later parts run the student's earlier ones: their failures name the part to fix first.
suite.builds_on(["selfattn/", "cross/", "mha/", "device/"], "attention", ["attention/"])
suite.builds_on(["mha/"], "SelfAttention", ["selfattn/"])
suite.builds_on(["causal/module"], "causal_attention", ["causal/attention"])

F64 = torch.float64
randn = partial(inputs.randn, dtype=F64)
TOL = 1e-5        # float64 cases, float32 constants allowed (see the module docstring)
PE_TOL = 1e-3     # the float32 position table (see the module docstring)


# ---------------------------------------------------------------------------------------
# Builders
# ---------------------------------------------------------------------------------------

def drawn_after(seed: int, layers: list[tuple[int, int]], *shapes) -> list[torch.Tensor]:
    """The source's inputs: torch.manual_seed(seed), nn.Linear(i, o) for each (i, o) in order
    (the documented construction), then torch.randn of each shape; in float64."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for fan_in, fan_out in layers:
            nn.Linear(fan_in, fan_out)
        return [torch.randn(*shape).to(F64) for shape in shapes]


def other_seed(g) -> int:
    """A construction seed for the autograder set and audits (the public set replays the
    source's own: the contract is the construction order, not one printout)."""
    return int(torch.randint(2**31 - 1, (), generator=g))


def built(seed: int, build, device):
    """Build a student module right after torch.manual_seed(seed), then move it to float64."""
    torch.manual_seed(seed)
    return build().to(device, F64)


def linear_state(g, prefix: str, fan_in: int, fan_out: int) -> dict:
    """Weights of an nn.Linear drawn from g, scaled so that projections stay of order 1."""
    return {f"{prefix}weight": randn(g, fan_out, fan_in, scale=fan_in ** -0.5),
            f"{prefix}bias": randn(g, fan_out, scale=0.1)}


def qkv_state(g, q_in: int, kv_in: int, key_dim: int, output_dim: int, prefix: str = "") -> dict:
    return {**linear_state(g, prefix + "linear_q.", q_in, key_dim),
            **linear_state(g, prefix + "linear_k.", kv_in, key_dim),
            **linear_state(g, prefix + "linear_v.", kv_in, output_dim)}


def rows_sum_to_one(*names):
    """Property: every row of the named attention weights sums to 1."""
    def holds(out):
        return all(torch.allclose(out[n].sum(-1), torch.ones_like(out[n][..., 0]),
                                  rtol=0, atol=1e-9) for n in names)
    return Property(holds, "attention weights must sum to 1 over the keys (softmax over the "
                           "last dimension)", "rows sum to 1")


def no_future_weight(*names):
    """Property: the weights above the diagonal (key j > query i) are exactly 0."""
    def holds(out):
        return all(out[n].triu(1).eq(0).all() for n in names)
    return Property(holds, "some query gives weight to a later key (j > i); those scores must "
                           "be -inf before the softmax", "no weight on the future")


def weights_of(name: str) -> str:
    return f"{name}_weights"


# ---------------------------------------------------------------------------------------
# Exercise 1. PositionalEncoder
# ---------------------------------------------------------------------------------------

def pe_source_inputs():
    # The source's input: (1, 4, 512), every row 0.01, 0.02, ..., 5.12.
    return {"x": (torch.arange(1, 513, dtype=F64) * 0.01).repeat(1, 4, 1)}


def pe_other_inputs(g):
    """The same construction at another even width (the table's default length, 80 rows)."""
    d_model = 2 * int(torch.randint(128, 384, (), generator=g))
    return {"x": randn(g, 1, 4, d_model)}


def pe_source_call(m, x, device):
    pe = m.PositionalEncoder(x["x"].shape[-1]).to(device)
    return {"output": pe(x["x"]), "pe": pe.pe}  # the buffer as stored: float32 by contract


suite.add(Case(
    "pe/source", 10, pe_other_inputs, pe_source_call, source_inputs=pe_source_inputs,
    tol=PE_TOL,
    hint="pe[pos, 2i] = sin(pos / 10000**(2i/d)), pe[pos, 2i+1] = cos(same angle): the whole "
         "2i/d is the exponent, 2i being the even column's index (0, 2, 4, ...); the buffer is "
         "float32"))

PE_SIZES = [(6, 20), (64, 80), (2, 5), (128, 100)]  # (d_model, max_seq_len)


def pe_sizes_inputs(g):
    return {"x": randn(g, 2, 7, 6), "one": randn(g, 1, 20, 6)}


def pe_sizes_call(m, x, device):
    out = {}
    for d_model, max_len in PE_SIZES:
        pe = (m.PositionalEncoder(d_model, max_len) if max_len != 80
              else m.PositionalEncoder(d_model)).to(device)
        out[f"pe_{d_model}x{max_len}"] = pe.pe  # float32 by contract
    small = m.PositionalEncoder(6, 20).to(device)
    out["forward"], out["forward_batch_of_one"] = small(x["x"]), small(x["one"])
    return out


suite.add(Case(
    "pe/sizes", 10, pe_sizes_inputs, pe_sizes_call, tol=PE_TOL,
    hint="pe has shape (1, max_seq_len, d_model); position 0 is the first row (sin 0 = 0, "
         "cos 0 = 1)"))


# ---------------------------------------------------------------------------------------
# Exercise 2. attention(q, k, v)
# ---------------------------------------------------------------------------------------

def attention_source_inputs(seed: int = 42):
    gen = torch.Generator().manual_seed(seed)  # the source: torch.manual_seed(42), then randn
    q, k, v = (torch.randn(*s, generator=gen).to(F64) for s in ((2, 5, 512), (2, 5, 512),
                                                               (2, 5, 256)))
    return {"q": q, "k": k, "v": v}


def attention_source_call(m, x, device):
    output, weights = m.attention(x["q"], x["k"], x["v"])
    return {"output": output, "output_weights": weights}


suite.add(Case(
    "attention/source", 15, lambda g: attention_source_inputs(other_seed(g)),
    attention_source_call, source_inputs=attention_source_inputs, tol=TOL,
    properties=[rows_sum_to_one("output_weights")],
    hint="softmax(q k^T / sqrt(d_k)) over the last (key) dimension, then times v"))

ATTENTION_SHAPES = {  # name: (N, L_q, L_k, d_k, d_v)
    "square": (3, 6, 6, 16, 8),
    "cross": (2, 4, 9, 8, 5),       # more keys than queries, d_v != d_k
    "batch_of_one": (1, 3, 7, 6, 4),
    "one_query": (2, 1, 4, 5, 3),
}


def attention_inputs(g):
    return {name: (randn(g, n, lq, dk), randn(g, n, lk, dk), randn(g, n, lk, dv))
            for name, (n, lq, lk, dk, dv) in ATTENTION_SHAPES.items()}


def attention_call(m, x, device):
    out = {}
    for name, (q, k, v) in x.items():
        out[name], out[weights_of(name)] = m.attention(q, k, v)
    return out


suite.add(Case(
    "attention/vs_torch", 15, attention_inputs, attention_call, tol=TOL,
    properties=[rows_sum_to_one(*map(weights_of, ATTENTION_SHAPES))],
    hint="queries and keys may have different lengths, and d_v may differ from d_k: scale by "
         "sqrt(d_k), the size of q and k"))


# ---------------------------------------------------------------------------------------
# Exercise 3. SelfAttention, CrossAttention, MultiHeadedAttention
# ---------------------------------------------------------------------------------------

def self_source_inputs(seed: int = 48):
    (x,) = drawn_after(seed, [(512, 64), (512, 64), (512, 512)], (4, 10, 512))
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(seed))
    return {"x": x, "perm": perm, "seed": torch.tensor(seed)}


def permuted(module, x, perm):
    """module(x with its positions shuffled by perm), shuffled back."""
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(len(perm), device=perm.device)
    return module(x[:, perm])[:, inverse]


def permutation_equivariant(first: str, second: str):
    return Property(lambda o: torch.allclose(o[first], o[second], rtol=0, atol=1e-9),
                    "shuffling the positions of x must shuffle the outputs the same way "
                    "(self-attention has no notion of order)", "permutation equivariant")


def self_source_call(m, x, device):
    sa = built(int(x["seed"]), lambda: m.SelfAttention(512, 64, 512), device)
    with torch.no_grad():
        return {"output": sa(x["x"]), "permuted": permuted(sa, x["x"], x["perm"])}


suite.add(Case(
    "selfattn/source", 8, lambda g: self_source_inputs(other_seed(g)), self_source_call,
    source_inputs=self_source_inputs, tol=TOL,
    properties=[permutation_equivariant("output", "permuted")],
    hint="create linear_q, linear_k, linear_v in that order (the weights come from the seed)"))

SELF_DIMS = (10, 4, 6)  # input_dim, key_dim, output_dim


def self_weights_inputs(g):
    return {"state": qkv_state(g, 10, 10, 4, 6), "x": randn(g, 3, 7, 10),
            "one": randn(g, 1, 5, 10), "perm": torch.randperm(7, generator=g)}


def self_weights_call(m, x, device):
    sa = load_state(m.SelfAttention(*SELF_DIMS), x["state"], device, F64)
    with torch.no_grad():
        return {"output": sa(x["x"]), "batch_of_one": sa(x["one"]),
                "permuted": permuted(sa, x["x"], x["perm"])}


suite.add(Case(
    "selfattn/weights", 9, self_weights_inputs, self_weights_call, tol=TOL,
    properties=[permutation_equivariant("output", "permuted")],
    hint="queries, keys and values are the three projections of x; the module returns attention's "
         "output, not its weights"))


def cross_source_inputs(seed: int = 14):
    x, y = drawn_after(seed, [(512, 64), (256, 64), (256, 128)], (3, 10, 512), (3, 10, 256))
    return {"x": x, "y": y, "seed": torch.tensor(seed)}


def cross_source_call(m, x, device):
    ca = built(int(x["seed"]), lambda: m.CrossAttention(512, 256, 64, 128), device)
    with torch.no_grad():
        return ca(x["x"], x["y"])


suite.add(Case(
    "cross/source", 8, lambda g: cross_source_inputs(other_seed(g)), cross_source_call,
    source_inputs=cross_source_inputs, tol=TOL,
    hint="create linear_q (from x), linear_k, linear_v (from y) in that order"))

CROSS_DIMS = (6, 10, 5, 3)  # x_input_dim, y_input_dim, key_dim, output_dim


def cross_lengths_inputs(g):
    return {"state": qkv_state(g, 6, 10, 5, 3), "x": randn(g, 2, 4, 6), "y": randn(g, 2, 9, 10),
            "x_one": randn(g, 1, 1, 6), "y_one": randn(g, 1, 5, 10)}


def cross_lengths_call(m, x, device):
    ca = load_state(m.CrossAttention(*CROSS_DIMS), x["state"], device, F64)
    with torch.no_grad():
        return {"output": ca(x["x"], x["y"]), "batch_of_one": ca(x["x_one"], x["y_one"])}


suite.add(Case(
    "cross/lengths", 8, cross_lengths_inputs, cross_lengths_call, tol=TOL,
    hint="queries from x, keys and values from y: the output has x's length, not y's"))


def mha_source_inputs(seed: int = 10):
    heads = [(256, 128), (256, 128), (256, 8)] * 8
    (x,) = drawn_after(seed, heads + [(64, 32)], (3, 10, 256))
    return {"x": x, "seed": torch.tensor(seed)}


def mha_source_call(m, x, device):
    def build():
        heads = [m.SelfAttention(256, 128, 64 // 8) for _ in range(8)]
        return m.MultiHeadedAttention(heads, 32)
    mha = built(int(x["seed"]), build, device)
    with torch.no_grad():
        return mha(x["x"])


suite.add(Case(
    "mha/source", 8, lambda g: mha_source_inputs(other_seed(g)), mha_source_call,
    source_inputs=mha_source_inputs, tol=TOL,
    hint="built right after the seed: the heads' layers in the order q, k, v, then linear_out; "
         "the head outputs joined along the last dimension (head 0 first), then linear_out"))

HEAD_DIMS = [(12, 5, 3), (12, 4, 6), (12, 6, 2)]  # unequal heads: (input, key, output) dims
MHA_OUT = 7


def mha_heads_inputs(g):
    state = {}
    for i, (d_in, d_key, d_out) in enumerate(HEAD_DIMS):
        state.update(qkv_state(g, d_in, d_in, d_key, d_out, f"attn_modules.{i}."))
    state.update(linear_state(g, "linear_out.", sum(d[2] for d in HEAD_DIMS), MHA_OUT))
    return {"state": state, "x": randn(g, 2, 5, 12), "one": randn(g, 1, 3, 12)}


def mha_heads_call(m, x, device):
    mha = m.MultiHeadedAttention([m.SelfAttention(*d) for d in HEAD_DIMS], MHA_OUT)
    mha = load_state(mha, x["state"], device, F64)
    with torch.no_grad():
        return {"output": mha(x["x"]), "batch_of_one": mha(x["one"])}


suite.add(Case(
    "mha/unequal_heads", 9, mha_heads_inputs, mha_heads_call, tol=TOL,
    hint="heads may differ in size: linear_out takes the sum of every head's output_dim"))


# ---------------------------------------------------------------------------------------
# Exercise 4. Causal attention
# ---------------------------------------------------------------------------------------

CAUSAL_SHAPES = {  # name: (N, L, d_k, d_v)
    "batch": (3, 6, 8, 5),
    "batch_of_one": (1, 4, 3, 3),
    "one_position": (2, 1, 4, 2),
}


def causal_inputs(g):
    return {name: (randn(g, n, t, dk), randn(g, n, t, dk), randn(g, n, t, dv))
            for name, (n, t, dk, dv) in CAUSAL_SHAPES.items()}


def causal_call(m, x, device):
    out = {}
    for name, (q, k, v) in x.items():
        out[name], out[weights_of(name)] = m.causal_attention(q, k, v)
    return out


suite.add(Case(
    "causal/attention", 5, causal_inputs, causal_call, tol=TOL,
    properties=[no_future_weight(*map(weights_of, CAUSAL_SHAPES)),
                rows_sum_to_one(*map(weights_of, CAUSAL_SHAPES))],
    hint="mask the scores with -inf where j > i (strictly above the diagonal), then softmax"))


def causal_module_inputs(g):
    return {"state": qkv_state(g, 10, 10, 4, 6), "x": randn(g, 3, 7, 10),
            "noise": randn(g, 3, 7, 10, scale=10.0), "cut": torch.randint(1, 6, (), generator=g)}


def causal_module_call(m, x, device):
    csa = load_state(m.CausalSelfAttention(*SELF_DIMS), x["state"], device, F64)
    cut = int(x["cut"])
    changed = x["x"].clone()
    changed[:, cut:] = x["noise"][:, cut:]  # change the future
    with torch.no_grad():
        return {"output": csa(x["x"]), "changed": csa(changed), "cut": x["cut"]}


def past_unchanged(out):
    t = int(out["cut"])
    return torch.allclose(out["output"][:, :t], out["changed"][:, :t], rtol=0, atol=1e-9)


suite.add(Case(
    "causal/module", 5, causal_module_inputs, causal_module_call, tol=TOL,
    properties=[Property(past_unchanged, "the output at position t changed when only inputs "
                         "after t changed: the module sees the future", "causal")],
    hint="the SelfAttention projections, then causal_attention instead of attention"))


# ---------------------------------------------------------------------------------------
# Every part on another device than the CPU (the meta device: shapes, no values)
# ---------------------------------------------------------------------------------------

def device_inputs(g):
    return {"x": randn(g, 2, 5, 10), "y": randn(g, 2, 7, 6)}


def device_call(m, x, device):
    """Each part with its inputs and modules on the meta device: a tensor it makes on the
    CPU (a causal mask without device=) meets them and is named. Every part runs there."""
    def run():
        seq, other = elsewhere(x["x"]), elsewhere(x["y"])
        q, k, v = seq[..., :4], seq[..., 4:8], seq
        heads = [m.SelfAttention(10, 4, 3), m.SelfAttention(10, 2, 5)]
        return {"pe": m.PositionalEncoder(10, 20).to(ELSEWHERE)(seq),
                "attention": m.attention(q, k, v), "causal": m.causal_attention(q, k, v),
                "self": m.SelfAttention(10, 4, 6).to(ELSEWHERE, F64)(seq),
                "cross": m.CrossAttention(10, 6, 4, 3).to(ELSEWHERE, F64)(seq, other),
                "heads": m.MultiHeadedAttention(heads, 7).to(ELSEWHERE, F64)(seq),
                "causal_module": m.CausalSelfAttention(10, 4, 6).to(ELSEWHERE, F64)(seq)}
    return device_checked(run)


suite.add(Case(
    "device/meta", 2, device_inputs, device_call, seeded=False, tol=TOL,
    hint="make new tensors (a mask) on the inputs' device: device=q.device"))
