"""The graded cases of the `gpt` assignment (a decoder-only language model on Shakespeare).

Exact cases run the classes in float64 with weights drawn from the case's seeded generator
under the assignment's parameter names (so the names are part of the contract): a correct
implementation agrees with the reference to about 1e-15 whatever order it adds in (scale
before or after the matmul, einsum, an additive mask, a manual softmax or log-softmax), and
to about 1e-7 with a float32 constant (the scale as `torch.sqrt(torch.tensor(n_hidden,
dtype=torch.float32))`, an equivalent); every known mistake moves an output by at least
about 1e-2 of its scale. TOL = 1e-5 sits 100x above the second and 1000x below the third
(the tolerance policy; `python -m grader audit gpt`). The loss is also judged by its
gradient (autograd's, through the student's loss, against the reference's).
`device/meta` runs the parts on the meta device, where a tensor made on the CPU is named.
Token ids, kept sets and sampled ids are compared exactly: sampling is specified down to
the call (`torch.multinomial(probs, 1, generator=generator)`), so under the same generator
a correct implementation draws the same ids, and float64 keeps rounding away from the
boundaries between tokens.

Masks follow the assignment's convention: attn_mask[b, i, j] == 1 means i MAY attend to j.
Rows with a batch of one catch `.squeeze()` that drops the batch dimension.

The training case (end of this file) trains the student's DialogueGPT inside the sandbox
on dialogues of Richard III and returns the weights; the reference code then computes the
validation loss on held-out dialogues the child never receives. (The play itself is in
site-packages, which the child can read, so a deliberate cheat could rebuild the split from
its seed: the case makes that work, not a free lunch.)
"""
import math

import torch
from torch import nn

from dlkit import shakespeare
from grader import policy
from grader.cases import Case, Property, Suite
from grader.inputs import (ELSEWHERE, attempt, device_checked, elsewhere, load_state,
                           load_trained, on_one_thread, randn, torch_threads, trained_state,
                           value_and_gradients)

suite = Suite("gpt")

# The library-shortcut policy (instructors: edit here). Per part, the library calls that would
# do its work; a case graded on that part loses its points when the part uses one of them
# (grader/policy.py). The part's docstring in solutions/gpt.py says what is off limits.
suite.ban("AttentionHead.forward", policy.SDPA, cases=["attention/head"])
suite.ban("MultiHeadedAttention", policy.MULTI_HEAD, cases=["attention/multi_head"])
suite.ban("Transformer", policy.TRANSFORMER_LAYERS, cases=["transformer/"])
suite.ban("DialogueGPT", policy.TRANSFORMER_LAYERS, cases=["model/forward"])

# Later parts run the student's earlier ones: their failures name the part to fix first.
suite.builds_on(["attention/multi_head", "transformer/", "model/forward", "generate/", "cache/",
                 "device/"], "AttentionHead", ["attention/head"])
suite.builds_on(["transformer/", "model/forward", "generate/", "cache/", "device/"],
                "MultiHeadedAttention", ["attention/multi_head"])
suite.builds_on(["model/forward", "generate/", "cache/", "device/"], "Transformer",
                ["transformer/"])
suite.builds_on(["generate/", "cache/"], "DialogueGPT", ["model/forward"])
suite.builds_on(["generate/", "cache/"], "AttentionHead",
                ["attention/head_cache"])
suite.builds_on(["sampling/sample_next_token", "generate/"], "top_k_filter", ["sampling/top_k"])
suite.builds_on(["sampling/sample_next_token", "generate/"], "top_p_filter", ["sampling/top_p"])
suite.builds_on(["generate/"], "sample_next_token", ["sampling/sample_next_token"])

F64 = torch.float64
TOL = 1e-5  # float64 cases, float32 constants allowed (see the module docstring)

# Small, non-default sizes: 3 heads of width 5 on a 12-wide stream, 2-3 layers.
HEAD = dict(dim=12, n_hidden=5)
MHA = dict(dim=12, n_hidden=5, num_heads=3)
STACK = dict(dim=16, attn_dim=6, mlp_dim=20, num_heads=2, num_layers=3)
GPT = dict(vocab_size=37, max_N=16, dim=16, attn_dim=6, mlp_dim=24, num_heads=3, num_layers=2)

# The source homework's tokenizer check (its ids depended on its corpus; the text does not).
SOURCE_LINE = "KING RICHARD III:\nSay that I did all this for love of her."
SOURCE_DECODED = "<START> KING RICHARD III : Say that I did all this for love of her ."
PLAY = "richard_iii"


# ---------------------------------------------------------------------------------------
# Small builders
# ---------------------------------------------------------------------------------------


def add(case: Case) -> Case:
    """Add an exact (non-training) case, run on one torch thread."""
    return suite.add(on_one_thread(case))


def random_state(module: nn.Module, g) -> dict:
    """The module's state_dict redrawn from `g`, in float64: matrices ~ N(0, 1/fan_in),
    LayerNorm weights near 1, biases small (activations stay of order 1)."""
    state = {}
    norms = {name for name, sub in module.named_modules() if isinstance(sub, nn.LayerNorm)}
    for key, value in module.state_dict().items():
        owner = key.rsplit(".", 1)[0] if "." in key else ""
        if value.dim() == 2:
            state[key] = randn(g, *value.shape, dtype=F64) / math.sqrt(value.shape[1])
        elif owner in norms and key.endswith("weight"):
            state[key] = 1.0 + randn(g, *value.shape, scale=0.1, dtype=F64)
        else:
            state[key] = randn(g, *value.shape, scale=0.1, dtype=F64)
    return state


def reference_gpt():
    """The reference solution module (fixture builder and audit only: inputs are never
    built inside the sandbox), imported without replacing a `gpt` module already loaded."""
    import sys
    from dlkit.utils import REPO_ROOT, load_assignment
    saved = sys.modules.get("gpt")
    module = load_assignment("gpt", REPO_ROOT / "solutions")
    if saved is not None:
        sys.modules["gpt"] = saved
    return module


_SHAPES: dict = {}


def state_for(name: str, g, **config) -> dict:
    """Random float64 weights for the reference's `name(**config)`, by parameter name."""
    key = (name, tuple(sorted(config.items())))
    if key not in _SHAPES:
        _SHAPES[key] = getattr(reference_gpt(), name)(**config)
    return random_state(_SHAPES[key], g)


def build(m, name: str, config: dict, state: dict, device):
    return load_state(getattr(m, name)(**config), state, device, dtype=F64)


def may_attend_mask(g, batch: int, length: int, dtype=torch.long) -> torch.Tensor:
    """A random (B, T, T) mask, 1 = may attend; the diagonal is always allowed."""
    mask = torch.rand(batch, length, length, generator=g) < 0.6
    mask |= torch.eye(length, dtype=torch.bool)
    return mask.to(dtype)


def blocked_max(alpha: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The largest weight on a blocked pair (mask == 0), broadcast over heads and layers."""
    blocked = (mask == 0).to(alpha.device)
    while blocked.dim() < alpha.dim():
        blocked = blocked.unsqueeze(1)
    return alpha.masked_fill(~blocked, 0).abs().amax().reshape(1).to(F64)


def rows_sum_to_one(*names):
    def holds(out):
        return all(torch.allclose(out[n].sum(-1), torch.ones((), dtype=out[n].dtype),
                                  atol=1e-9) for n in names)
    return holds


def exactly_zero(name):
    return lambda out: float(out[name].max()) == 0.0


# ---------------------------------------------------------------------------------------
# Part 1. Attention and the transformer stack
# ---------------------------------------------------------------------------------------

def head_inputs(g):
    B, T = 3, 6
    return {"state": state_for("AttentionHead", g, **HEAD),
            "x": randn(g, B, T, HEAD["dim"], dtype=F64),
            "mask": may_attend_mask(g, B, T)}


def head_call(m, x, device):
    head = build(m, "AttentionHead", HEAD, x["state"], device)
    mask = x["mask"]
    with torch.no_grad():
        plain, plain_alpha = head(x["x"], None)
        masked, masked_alpha = head(x["x"], mask)
        as_bool, _ = head(x["x"], mask.bool())
        one, one_alpha = head(x["x"][:1], mask[:1].float())
    return {"out": plain, "alpha": plain_alpha, "masked": masked, "masked_alpha": masked_alpha,
            "bool_mask": as_bool, "batch_of_one": one, "batch_of_one_alpha": one_alpha,
            "blocked_max": blocked_max(masked_alpha, mask)}


add(Case(
    "attention/head", 3, head_inputs, head_call, tol=TOL,
    properties=[Property(rows_sum_to_one("alpha", "masked_alpha"),
                         "attention weights do not sum to 1 over the keys (softmax over "
                         "the last dimension)", "rows sum to 1"),
                Property(exactly_zero("blocked_max"),
                         "a blocked pair (attn_mask == 0) got non-zero weight: fill its "
                         "score with -inf before the softmax", "blocked weights are 0")],
    hint="alpha = softmax(Q K^T / sqrt(n_hidden)) over the keys; mask == 0 blocks (-inf), 1 "
         "may attend (a NaN comes from a row whose every key was blocked: read the mask the "
         "other way round)"))


def head_cache_inputs(g):
    x = head_inputs(g)
    x["split"] = torch.randint(1, 5, (), generator=g)
    return x


def head_cache_call(m, x, device):
    """Run the head on the first `split` positions with an empty cache, then on the rest:
    the second call's output must equal the full run's last rows."""
    head = build(m, "AttentionHead", HEAD, x["state"], device)
    T, split = x["x"].shape[1], int(x["split"])
    causal = torch.tril(torch.ones(T, T, dtype=torch.long)).expand(x["x"].shape[0], -1, -1)
    cache = {}
    with torch.no_grad():
        full, _ = head(x["x"], causal)
        first, _ = head(x["x"][:, :split], causal[:, :split, :split], cache)
        rest, rest_alpha = head(x["x"][:, split:], causal[:, split:, :], cache)
    return {"full": full, "first": first, "rest": rest, "rest_alpha": rest_alpha,
            "cached_k": cache["k"], "cached_v": cache["v"]}


add(Case(
    "attention/head_cache", 2, head_cache_inputs, head_cache_call, tol=TOL,
    properties=[Property(lambda o: torch.allclose(o["rest"], o["full"][:, -o["rest"].shape[1]:],
                                                  rtol=0, atol=1e-9),
                         "with a KV cache, the outputs of the later positions differ from an "
                         "uncached run: append the new keys and values after the cached ones",
                         "cached == uncached")],
    hint="with a cache, the cached keys and values come first along time, then the new ones; "
         "store the joined ones back in the cache"))


def mha_inputs(g):
    B, T = 2, 7
    return {"state": state_for("MultiHeadedAttention", g, **MHA),
            "x": randn(g, B, T, MHA["dim"], dtype=F64), "mask": may_attend_mask(g, B, T)}


def mha_call(m, x, device):
    mha = build(m, "MultiHeadedAttention", MHA, x["state"], device)
    with torch.no_grad():
        out, alphas = mha(x["x"], x["mask"])
        plain, _ = mha(x["x"], None)
        one, one_alphas = mha(x["x"][:1], x["mask"][:1])
    return {"out": out, "alphas": alphas, "plain": plain, "batch_of_one": one,
            "batch_of_one_alphas": one_alphas, "blocked_max": blocked_max(alphas, x["mask"])}


add(Case(
    "attention/multi_head", 3, mha_inputs, mha_call, tol=TOL,
    properties=[Property(exactly_zero("blocked_max"),
                         "a blocked pair got non-zero weight in some head",
                         "blocked weights are 0")],
    hint="every head on x; the outputs joined feature-wise, head 0 first, then projected; the "
         "weights stacked on dim 1"))


def stack_inputs(g, batch=4, length=7):
    return {"state": state_for("Transformer", g, **STACK),
            "x": randn(g, batch, length, STACK["dim"], dtype=F64)}


def shapes_call(m, x, device):
    """The source's test cases 1 and 2: no mask, with and without return_attn."""
    model = build(m, "Transformer", STACK, x["state"], device)
    with torch.no_grad():
        out, none = model(x["x"], attn_mask=None)
        out_attn, attns = model(x["x"], attn_mask=None, return_attn=True)
        one, _ = model(x["x"][:1], attn_mask=None)
    return {"out": out, "alpha_is_none": torch.tensor(none is None), "out_attn": out_attn,
            "attns": attns, "batch_of_one": one}


add(Case(
    "transformer/shapes", 2, stack_inputs, shapes_call, tol=TOL,
    hint="attns is None unless return_attn; else (B, num_layers, num_heads, T, T), stacked "
         "on dim 1"))


def banded_call(m, x, device):
    """The source's test case 3: a float mask with 1 on the diagonal and the one below."""
    model = build(m, "Transformer", STACK, x["state"], device)
    B, T, _ = x["x"].shape
    mask = (torch.eye(T) + torch.diag(torch.ones(T - 1), -1)).expand(B, -1, -1)
    with torch.no_grad():
        out, attns = model(x["x"], attn_mask=mask, return_attn=True)
    return {"out": out, "attns": attns, "blocked_max": blocked_max(attns, mask)}


add(Case(
    "transformer/banded_mask", 2, stack_inputs, banded_call, tol=TOL,
    properties=[Property(exactly_zero("blocked_max"),
                         "weights where the (float) mask is 0 are not exactly 0: 1 means may "
                         "attend, 0 blocks", "blocked weights are exactly 0")],
    hint="attn_mask == 0 blocks a pair whatever the mask's dtype (here float)"))


def causal_cpu_call(m, x, device):
    """The source's test case 4: the causal mask is built on the CPU whatever the device."""
    model = build(m, "Transformer", STACK, x["state"], device)
    B, T, _ = x["x"].shape
    mask = torch.tril(torch.ones(T, T)).unsqueeze(0).repeat(B, 1, 1)  # on the CPU
    with torch.no_grad():
        out, attns = model(x["x"], attn_mask=mask, return_attn=True)
    above = attns.masked_fill(~torch.ones(T, T, dtype=torch.bool).triu(1).to(attns.device), 0)
    return {"out": out, "attns": attns, "above_diagonal_max": above.abs().amax().reshape(1)}


add(Case(
    "transformer/causal_cpu_mask", 2, lambda g: stack_inputs(g, batch=3, length=9),
    causal_cpu_call, tol=TOL,
    properties=[Property(lambda o: float(o["above_diagonal_max"].max()) < 1e-6,
                         "a causal mask left weight above the diagonal (>= 1e-6)",
                         "causal weights above the diagonal < 1e-6")],
    hint="the mask may be on another device than the scores: move it to theirs"))


# ---------------------------------------------------------------------------------------
# Part 2. The tokenizer
# ---------------------------------------------------------------------------------------

TEXT_BYTES = 4096


def text_bytes(text: str) -> torch.Tensor:
    """UTF-8 bytes of `text` in a fixed-size, zero-padded tensor (so that text of another
    length is a wrong value, not a wrong shape)."""
    data = list(text.encode("utf-8"))[:TEXT_BYTES]
    return torch.tensor(data + [0] * (TEXT_BYTES - len(data)), dtype=torch.uint8)


def made_up_word(g) -> str:
    letters = torch.randint(0, 26, (int(torch.randint(4, 9, (), generator=g)),), generator=g)
    return "Q" + "".join(chr(ord("a") + int(i)) for i in letters)  # no such word in the play


def tokenizer_inputs(g):
    lines = shakespeare.dialogues([PLAY])
    picks = torch.randint(len(lines), (6,), generator=g).tolist()
    chosen = [lines[i][:300] for i in picks]
    unknown = f"{made_up_word(g)}, my lord? {made_up_word(g)}!"
    return {"play": PLAY, "lines": [SOURCE_LINE, "", unknown] + chosen}


def tokenizer_call(m, x, device):
    tok = m.MyTokenizer(shakespeare.play_text(x["play"]))  # the whole text: title included
    encoded = [tok.encode(line) for line in x["lines"]]
    decoded = [tok.decode(ids) for ids in encoded]
    padded = tok.pad_examples(encoded[2:6])  # rows of other lengths: <PAD>s on the right
    return {"ids": torch.cat(encoded), "lengths": torch.tensor([len(e) for e in encoded]),
            "dtype_is_int64": torch.tensor(all(e.dtype == torch.int64 for e in encoded)),
            "decoded": text_bytes("\n".join(decoded)),
            "decoded_padded_rows": text_bytes("\n".join(tok.decode(row) for row in padded)),
            "source_round_trip": torch.tensor(decoded[0] == SOURCE_DECODED)}


add(Case(
    "tokenizer/encode_decode", 3, tokenizer_inputs, tokenizer_call,
    properties=[Property(lambda o: bool(o["source_round_trip"]),
                         f"decode(encode(...)) of the source's example must give "
                         f"{SOURCE_DECODED!r}", "source round trip")],
    hint="encode: the start id, then one id per word of word_tokenize (<UNK> when unknown), "
         "int64; decode: every id's token (specials and <PAD> included) joined by single "
         "spaces"))


# ---------------------------------------------------------------------------------------
# Part 3. The model and its loss
# ---------------------------------------------------------------------------------------

def gpt_inputs(g, batch=3, length=9):
    V = GPT["vocab_size"]
    ids = torch.randint(3, V, (batch, length), generator=g)
    ids[:, 0] = 0  # <START>
    cut = torch.randint(2, length - 1, (), generator=g)
    changed = ids.clone()
    changed[:, int(cut):] = torch.randint(3, V, (batch, length - int(cut)), generator=g)
    full = torch.randint(3, V, (1, GPT["max_N"]), generator=g)
    return {"state": state_for("DialogueGPT", g, **GPT), "ids": ids, "changed": changed,
            "cut": cut, "full_length": full}


def gpt_call(m, x, device):
    model = build(m, "DialogueGPT", GPT, x["state"], device)
    with torch.no_grad():
        logits, alphas = model(x["ids"], return_attn=True)
        plain, none = model(x["ids"])
        changed, _ = model(x["changed"])
        one, _ = model(x["ids"][:1])
        full, _ = model(x["full_length"])
    return {"logits": logits, "alphas": alphas, "alpha_is_none": torch.tensor(none is None),
            "plain": plain, "changed": changed, "cut": x["cut"], "batch_of_one": one,
            "max_N_tokens": full}


def same_before_cut(out):
    t = int(out["cut"])
    return torch.allclose(out["logits"][:, :t], out["changed"][:, :t], rtol=0, atol=1e-9)


add(Case(
    "model/forward", 4, gpt_inputs, gpt_call, tol=TOL,
    properties=[Property(same_before_cut,
                         "the model is not causal: logits at t changed when tokens after t "
                         "changed (mask: 1 where j <= i)", "causal")],
    hint="token embedding plus the embedding of positions 0..T-1; the causal mask is "
         "lower-triangular ones of shape (B, T, T)"))


def loss_inputs(g):
    B, T, V = 4, 8, 11
    lengths = torch.tensor([T, 2] + torch.randint(2, T + 1, (B - 2,), generator=g).tolist())
    mask = (torch.arange(T)[None, :] < lengths[:, None]).float()
    ids = torch.randint(3, V, (B, T), generator=g)
    ids[:, 0] = 0
    ids = ids.masked_fill(mask == 0, 1)  # <PAD>
    return {"logits": randn(g, B, T, V, scale=2.0, dtype=F64), "ids": ids, "mask": mask}


def loss_call(m, x, device):
    loss = m.DialogueLoss()
    logits, ids, mask = x["logits"], x["ids"], x["mask"]
    value, (gradient,) = value_and_gradients(lambda z: loss(z, ids, mask), logits)
    return {"padded": loss(logits, ids, mask).reshape(1), "gradient": gradient,
            "bool_mask": loss(logits, ids, mask.bool()).reshape(1),
            "no_padding": loss(logits[:1], ids[:1], mask[:1]).reshape(1),
            "two_tokens": loss(logits[1:2], ids[1:2], mask[1:2]).reshape(1)}


add(Case(
    "model/loss", 3, loss_inputs, loss_call, tol=TOL,
    hint="the logits at t predict the token at t + 1; weight each token's loss by the mask of "
         "that next token and divide by the mask's sum; keep it a tensor of the graph (it "
         "trains the model)"))


# ---------------------------------------------------------------------------------------
# Part 4. Choosing the next token, generation, the KV cache
# ---------------------------------------------------------------------------------------

def filter_inputs(g):
    tied = torch.randint(0, 5, (4, 12), generator=g).to(F64)  # ties at every k-th largest
    return {"logits": randn(g, 5, 30, scale=2.0, dtype=F64), "tied": tied}


def filtered(logits):
    return {"kept": torch.isfinite(logits), "probs": torch.softmax(logits, dim=-1)}


def top_k_call(m, x, device):
    out = {}
    for k in (1, 4, 30, 50):
        for key, value in filtered(m.top_k_filter(x["logits"], k)).items():
            out[f"k{k}_{key}"] = value
    for key, value in filtered(m.top_k_filter(x["logits"][:1], 3)).items():
        out[f"batch_of_one_{key}"] = value
    for k in (2, 5):  # a tie at the k-th largest keeps every tied logit
        out[f"tied_k{k}_kept"] = torch.isfinite(m.top_k_filter(x["tied"], k))
    return out


add(Case("sampling/top_k", 2, filter_inputs, top_k_call, tol=TOL,
               hint="keep logits >= the k-th largest of the row (ties with it stay too); k >= V "
                    "keeps all"))


def top_p_call(m, x, device):
    out = {}
    for p in (0.01, 0.5, 0.9, 1.0):
        for key, value in filtered(m.top_p_filter(x["logits"], p)).items():
            out[f"p{p}_{key}"] = value
    return out


add(Case("sampling/top_p", 3, filter_inputs, top_p_call, tol=TOL,
               hint="sort, cumulative softmax; keep the token that crosses p (drop a token only "
                    "when the mass before it is already >= p)"))


DRAWS = 4000


def sample_inputs(g):
    return {"logits": randn(g, 6, 30, scale=2.0, dtype=F64),
            "seed": torch.randint(0, 2**31 - 1, (), generator=g)}


def sample_call(m, x, device):
    # Sampling runs on the CPU: a CUDA generator draws other numbers than the fixture's.
    logits, seed = x["logits"].cpu(), int(x["seed"])

    def draw(rows, **kwargs):
        return m.sample_next_token(rows, generator=torch.Generator().manual_seed(seed), **kwargs)

    many = logits[2:3].expand(DRAWS, -1)
    settings = {"t1": dict(temperature=1.0), "t0.5": dict(temperature=0.5),
                "top_k": dict(temperature=1.0, top_k=5),
                "top_p": dict(temperature=1.0, top_p=0.8),
                "all": dict(temperature=0.7, top_k=8, top_p=0.9)}
    out = {"greedy": draw(logits, temperature=0.0),
           "greedy_one": draw(logits[:1], temperature=0.0),
           "one_row": draw(logits[:1], temperature=1.0, top_k=4)}
    for name, kwargs in settings.items():
        out[name] = draw(logits, **kwargs)
        out[name + "_counts"] = torch.bincount(draw(many, **kwargs), minlength=30)
    return out


def at_most_k_drawn(key: str, k: int):
    """Property: the DRAWS draws of one row with top_k = k hit at most k distinct tokens."""
    return lambda out: int((out[key] > 0).sum()) <= k


add(Case(
    "sampling/sample_next_token", 4, sample_inputs, sample_call,
    properties=[Property(at_most_k_drawn("top_k_counts", 5),
                         "with top_k=5 the draws hit more than 5 different tokens: sampling "
                         "must use the filtered logits", "never outside the top k"),
                Property(at_most_k_drawn("all_counts", 8),
                         "with top_k=8 (and top_p) the draws hit more than 8 different tokens",
                         "never outside the top k (with top_p)")],
    hint="temperature 0: argmax; else logits over temperature, the top-k and top-p filters, "
         "softmax, and one multinomial draw per row from the given generator"))


def generate_inputs(g):
    x = gpt_inputs(g)
    long = torch.randint(3, GPT["vocab_size"], (2, GPT["max_N"] + 2), generator=g)
    return {"state": x["state"], "prompt": x["ids"][:, :5], "long_prompt": long,
            "seed": torch.randint(0, 2**31 - 1, (), generator=g)}


def greedy_call(m, x, device):
    model = build(m, "DialogueGPT", GPT, x["state"], device)
    prompt, long = x["prompt"], x["long_prompt"]
    B, T = prompt.shape
    return {"cached": model.generate(prompt, 6),
            "uncached": model.generate(prompt, 6, use_cache=False),
            # 5 + 40 > max_N = 16: generation stops at 16 tokens
            "clipped": attempt(lambda: model.generate(prompt, 40), (B, GPT["max_N"])),
            "clipped_uncached": attempt(lambda: model.generate(prompt, 40, use_cache=False),
                                        (B, GPT["max_N"])),
            "batch_of_one": attempt(lambda: model.generate(prompt[:1], 4), (1, T + 4)),
            "from_start": model.generate(prompt[:, :1], 3),
            # a prompt of max_N tokens or more comes back as it is
            "prompt_of_max_N": attempt(lambda: model.generate(long[:, :GPT["max_N"]], 3),
                                       (2, GPT["max_N"])),
            "longer_prompt": attempt(lambda: model.generate(long, 3), tuple(long.shape))}


add(Case(
    "generate/greedy", 3, generate_inputs, greedy_call,
    hint="append the argmax of the last position's logits; stop at max_N tokens in all (a "
         "prompt of max_N or more comes back unchanged)"))


def sampled_call(m, x, device):
    # On the CPU: a CUDA generator draws other numbers than the fixture's.
    model = build(m, "DialogueGPT", GPT, x["state"], "cpu")
    seed = int(x["seed"])

    def run(**kwargs):
        return model.generate(x["prompt"], 9, generator=torch.Generator().manual_seed(seed),
                              **kwargs)
    return {"t1": run(temperature=1.0), "t1_uncached": run(temperature=1.0, use_cache=False),
            "nucleus": run(temperature=0.8, top_k=10, top_p=0.9),
            "nucleus_uncached": run(temperature=0.8, top_k=10, top_p=0.9, use_cache=False)}


add(Case(
    "generate/sampled", 2, generate_inputs, sampled_call,
    hint="pass temperature, top_k, top_p and the generator on to sample_next_token"))


def cache_inputs(g):
    x = gpt_inputs(g, batch=2, length=12)
    return {"state": x["state"], "ids": x["ids"], "prompt": torch.randint(2, 6, (), generator=g)}


def cache_call(m, x, device):
    """Logits of a KV-cached run (a prompt, a chunk of 3, then one token at a time) against
    the uncached model's on the same tokens."""
    model = build(m, "DialogueGPT", GPT, x["state"], device)
    ids, prompt = x["ids"], int(x["prompt"])
    cache = model.new_cache()
    with torch.no_grad():
        uncached, _ = model(ids)
        pieces = [model(ids[:, :prompt], kv_cache=cache)[0],
                  model(ids[:, prompt:prompt + 3], kv_cache=cache)[0]]
        for t in range(prompt + 3, ids.shape[1]):
            pieces.append(model(ids[:, t:t + 1], kv_cache=cache)[0])
        _, last_alphas = model(ids[:, :1], return_attn=True, kv_cache=cache)
    return {"uncached": uncached, "cached": torch.cat(pieces, dim=1),
            "cache_length": torch.tensor(cache.length), "last_alphas": last_alphas}


add(Case(
    "cache/logits_match", 4, cache_inputs, cache_call, tol=TOL,
    properties=[Property(lambda o: (o["cached"] - o["uncached"]).abs().max()
                         <= 1e-9 * o["uncached"].abs().max(),
                         "the KV-cached logits differ from the uncached model's: positions "
                         "must continue from kv_cache.length and the mask must let the new "
                         "tokens see every cached one", "cached == uncached")],
    hint="read P, the cached length, first: the new positions are P..P+T-1, and query i sees "
         "every cached key and the new keys up to itself"))


# ---------------------------------------------------------------------------------------
# Every part on another device than the CPU (the meta device: shapes, no values)
# ---------------------------------------------------------------------------------------

def device_inputs(g):
    x = gpt_inputs(g)
    return {"ids": x["ids"], "mask": may_attend_mask(g, 3, 9)}


def device_call(m, x, device):
    """The head given a mask left on the CPU (the contract: move it), the model (positions
    and the causal mask made on the inputs' device), its loss, the filters and greedy
    generation, with and without the cache, on the meta device. Not here: the tokenizer
    (strings) and sampling (it draws from a CPU generator; graded on the CPU)."""
    def run():
        ids = elsewhere(x["ids"])
        stream = torch.zeros(*ids.shape, HEAD["dim"], dtype=F64, device=ELSEWHERE)
        head = m.AttentionHead(**HEAD).to(ELSEWHERE, F64)
        model = m.DialogueGPT(**GPT).to(ELSEWHERE, F64).eval()
        logits, _ = model(ids, return_attn=True)
        return {"head": head(stream, x["mask"]),
                "loss": m.DialogueLoss()(logits, ids, torch.ones_like(ids)),
                "top_k": m.top_k_filter(logits, 3), "top_p": m.top_p_filter(logits, 0.9),
                "greedy": m.sample_next_token(logits[:, -1], temperature=0.0),
                "cached": model.generate(ids[:, :4], 3),
                "uncached": model.generate(ids[:, :4], 3, use_cache=False)}
    return device_checked(run)


add(Case(
    "device/meta", 2, device_inputs, device_call, seeded=False, tol=TOL,
    hint="make positions and masks on the inputs' device (device=input_ids.device) and move a "
         "given mask to the scores' device"))


# ---------------------------------------------------------------------------------------
# Training: Richard III's dialogues, validation loss computed by the reference
# ---------------------------------------------------------------------------------------

# cpu profile: a 2-layer model, 64 wide, on dialogues of at most 48 tokens; steps, not
# seconds. The gpu profile (chosen when grading on CUDA) keeps the source's model and
# optimiser (dim 128, attn 64, mlp 128, 3 heads, 6 layers, AdamW lr 1e-4, batch 64) and its
# 80 epochs over these dialogues (~15 steps each), judged by the same MAX_LOSS. No GPU here:
# tests/test_gpt.py runs its code path on tiny stand-in settings, and a partial CPU run of
# the real settings on the public split reached 6.48 after 150 steps and 5.865 after 300.
PROFILES = {
    "cpu": dict(model=dict(dim=64, attn_dim=32, mlp_dim=128, num_heads=2, num_layers=2),
                steps=200, batch_size=32, lr=3e-3, warmup=20, threads=1),
    "gpu": dict(model=dict(dim=128, attn_dim=64, mlp_dim=128, num_heads=3, num_layers=6),
                steps=1200, batch_size=64, lr=1e-4, warmup=100, threads=0),
}
MAX_N = 48
HELD_OUT = 0.1
# Calibrated with the reference (cpu profile, 200 steps; in-process through call ->
# weights -> evaluate): held-out loss on ten splits (generator seeds 0, 1e6, 1..8) 5.574,
# 5.746, 5.619, 5.647, 5.553, 5.492, 5.623, 5.517, 5.516, 5.528 (mean 5.58, worst 5.75);
# 5.545 on the public set's split, 5.531 on the autograder set's. On split 0: the unigram
# distribution of the training words 6.22, uniform 8.34; trained with a known mistake:
# no attention mask 6.01, torch.triu instead of tril 6.34, unshifted loss 10.4 (no scale,
# 5.60, and padding counted in the loss, 5.62, are caught by the exact cases instead).
# 5.9 leaves 0.15 above the worst reference run and fails the mask-less model by 0.11.
MAX_LOSS = 5.9


def profile_name(device) -> str:
    return "gpu" if torch.device(device).type == "cuda" else "cpu"


def split(seed: int) -> tuple[list[str], list[str]]:
    """Richard III's dialogues split by `seed` into (training, held-out) dialogues."""
    lines = shakespeare.dialogues([PLAY])
    order = torch.randperm(len(lines), generator=torch.Generator().manual_seed(seed)).tolist()
    held = int(len(lines) * HELD_OUT)
    return [lines[i] for i in sorted(order[held:])], [lines[i] for i in sorted(order[:held])]


def training_inputs(g):
    """The training dialogues' ids (the reference tokenizer of the training text; the
    tokenizer is graded above) and the split's seed. The held-out dialogues go only to the
    reference's evaluation, in the expected values."""
    seed = int(torch.randint(0, 2**31 - 1, (), generator=g))
    train, _ = split(seed)
    tok = reference_gpt().MyTokenizer("\n\n".join(train))
    return {"train_ids": shakespeare.encode_dialogues(tok, train, MAX_N, torch.int16),
            "vocab_size": torch.tensor(tok.vocab_size), "split": torch.tensor(seed)}


def training_reference(x):
    """{"data": held-out ids}, encoded with the training text's tokenizer."""
    train, test = split(int(x["split"]))
    tok = reference_gpt().MyTokenizer("\n\n".join(train))
    return {"data": {"ids": shakespeare.encode_dialogues(tok, test, MAX_N, torch.int16)}}


def model_config(vocab_size: int, name: str) -> dict:
    return dict(vocab_size=vocab_size, max_N=MAX_N, **PROFILES[name]["model"])


def train_call(m, x, device):
    from grader.sandbox import report_progress
    name = profile_name(device)
    p = PROFILES[name]
    with torch_threads(p["threads"] or torch.get_num_threads()):
        torch.manual_seed(0)
        model = m.DialogueGPT(**model_config(int(x["vocab_size"]), name))
        shakespeare.train_gpt(model, m.DialogueLoss(), x["train_ids"], 1, steps=p["steps"],
                              batch_size=p["batch_size"], lr=p["lr"], warmup=p["warmup"],
                              device=device, progress=False, on_step=report_progress)
    return trained_state(model)


def evaluate_call(ref, weights, data, device):
    """Runs with the REFERENCE module only: the validation loss of the trained weights."""
    head = weights.get("head.1.bias")  # the given head: its size is the vocabulary's
    vocab_size = head.shape[0] if isinstance(head, torch.Tensor) and head.dim() == 1 else 3
    model = ref.DialogueGPT(**model_config(vocab_size, profile_name(device)))
    model = load_trained(model, {k: v.float() for k, v in weights.items()}, device)
    loss = shakespeare.evaluate_loss(model, ref.DialogueLoss(), data["ids"], 1, device=device)
    return torch.tensor(loss, dtype=F64)


suite.add(Case(
    "train/dialogue_gpt", 10, training_inputs, train_call, reference=training_reference,
    # 200 steps on one thread: under 20 s through the sandbox on this 2-core machine when
    # idle (the whole suite graded in 24 s), 83 s under a load of ~15, 90-230 s in-process
    # under 10-13 (about 26 s of CPU time). Judged by work: 300 s of CPU time (over 10x the
    # reference's); 900 s of wall time is a backstop (45x the idle time), not a budget.
    evaluate=evaluate_call, max_loss=MAX_LOSS, time_limit=900.0, cpu_time=300.0,
    hint="train the other parts first: this case trains your DialogueGPT from scratch and the "
         "grader measures its loss on held-out dialogues"))
