"""The graded cases of the `transformer` assignment.

Inputs are built from a seeded generator, so the public set (self-checks) and the autograder
set (other seeds) differ. Reference layers from `torch.nn` provide the expected values where
the assignment promises to match them.
"""
import torch
import torch.nn.functional as F
from torch import nn

from dlkit import arith
from grader.cases import Case, Property, Suite
from grader.inputs import linspace, load_state, randn

suite = Suite("transformer")

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

def padding_mask(g, batch, length, dtype=torch.bool):
    """A random key-padding mask (1 = pad) whose rows keep at least the first position."""
    lengths = torch.randint(1, length + 1, (batch,), generator=g)
    return (torch.arange(length)[None, :] >= lengths[:, None]).to(dtype)


def random_state(module: nn.Module, g, scale=0.05) -> dict:
    """The module's state_dict with every tensor redrawn from `g` (normal, std `scale`)."""
    return {k: randn(g, *v.shape, scale=scale) for k, v in module.state_dict().items()}


def with_state(module: nn.Module, state: dict) -> nn.Module:
    module.load_state_dict(state)
    return module.train()  # train mode keeps torch's layers off their eval fast path


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

def loop_single_inputs(g):
    K, M = 5, 4
    return {"source": (linspace(-0.4, 0.6, K, M), linspace(-0.8, 0.5, K, M),
                       linspace(-0.3, 0.8, K, M)),
            "random": (randn(g, 7, 6), randn(g, 7, 6), randn(g, 7, 6))}


suite.add(Case(
    "attention/two_loop_single", 2, loop_single_inputs,
    lambda m, x, device: {k: m.scaled_dot_product_two_loop_single(*v) for k, v in x.items()},
    hint="scores[i, j] = query[i] . key[j] / sqrt(M), softmax over j, then times value"))


def loop_batch_inputs(g):
    N, K, M = 2, 5, 4
    return {"source": (linspace(-0.4, 0.6, N, K, M), linspace(-0.8, 0.5, N, K, M),
                       linspace(-0.3, 0.8, N, K, M)),
            "random": (randn(g, 3, 6, 8), randn(g, 3, 6, 8), randn(g, 3, 6, 8))}


suite.add(Case(
    "attention/two_loop_batch", 2, loop_batch_inputs,
    lambda m, x, device: {k: m.scaled_dot_product_two_loop_batch(*v) for k, v in x.items()},
    hint="same as the single version, one score per batch element"))


def no_loop_inputs(g):
    base = loop_batch_inputs(g)
    base["cross"] = (randn(g, 3, 4, 8), randn(g, 3, 7, 8), randn(g, 3, 7, 5))
    return base


def no_loop_call(m, x, device):
    out = {}
    for key, (q, k, v) in x.items():
        out[key], out[key + "_weights"] = m.scaled_dot_product_no_loop_batch(q, k, v)
    return out


suite.add(Case(
    "attention/no_loop_batch", 2, no_loop_inputs, no_loop_call,
    properties=[Property(lambda o: torch.allclose(o["cross_weights"].sum(-1),
                                                  torch.ones(3, 4), atol=1e-5),
                         "attention weights do not sum to 1 over the keys")],
    hint="return (output, weights); weights is softmax over the last (key) dimension"))


def fixed_attention_inputs(g):
    q = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]]).view(1, 2, 3)
    k = torch.eye(3).view(1, 3, 3)
    v = torch.tensor([[3.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 7.0]]).view(1, 3, 3)
    return {"q": q, "k": k, "v": v, "mask": torch.tensor([[0, 0, 1]]).bool(),
            "random": (randn(g, 3, 5, 7), randn(g, 3, 11, 7), randn(g, 3, 11, 7))}


def fixed_attention_call(m, x, device):
    return {"plain": m.scaled_dot_product_attention(x["q"], x["k"], x["v"]),
            "masked": m.scaled_dot_product_attention(x["q"], x["k"], x["v"], x["mask"]),
            "random": m.scaled_dot_product_attention(*x["random"])}


suite.add(Case("attention/vectorized", 2, fixed_attention_inputs, fixed_attention_call,
               tol=1e-4, hint="no loops: bmm or einsum, scale by 1/sqrt(d_head)"))


def key_padding_inputs(g):
    n, t, s, d = 6, 5, 7, 8
    return {"q": randn(g, n, t, d), "k": randn(g, n, s, d), "v": randn(g, n, s, d),
            "noise": randn(g, n, s, d, scale=100.0), "mask": padding_mask(g, n, s)}


def key_padding_call(m, x, device):
    mask = x["mask"]
    # Changing the keys and values of padded positions must not change anything.
    k2 = torch.where(mask[..., None], x["noise"], x["k"])
    v2 = torch.where(mask[..., None], x["noise"], x["v"])
    return {"bool": m.scaled_dot_product_attention(x["q"], x["k"], x["v"], mask),
            "uint8": m.scaled_dot_product_attention(x["q"], x["k"], x["v"], mask.to(torch.uint8)),
            "int64": m.scaled_dot_product_attention(x["q"], x["k"], x["v"], mask.long()),
            "perturbed": m.scaled_dot_product_attention(x["q"], k2, v2, mask)}


suite.add(Case(
    "attention/key_padding_mask", 3, key_padding_inputs, key_padding_call, tol=1e-4,
    properties=[Property(lambda o: torch.allclose(o["bool"], o["perturbed"], rtol=0, atol=1e-6),
                         "padded keys still get weight: changing them changed the output "
                         "(1 = pad must get exactly zero weight)")],
    hint="masked_fill the scores with -inf where key_padding_mask.bool() is True"))


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
            "cut": x["cut"]}


suite.add(Case(
    "attention/causal", 3, causal_inputs, causal_call, tol=1e-4,
    properties=[Property(same_prefix("out", "changed", "cut"),
                         "with causal=True, position t changed when keys after t changed: "
                         "the mask lets queries see the future")],
    hint="query i may attend to keys j <= i: mask the strict upper triangle"))


# ---------------------------------------------------------------------------------------
# Part 3. Multi-head attention, checked against torch.nn.MultiheadAttention
# ---------------------------------------------------------------------------------------

D_MODEL, N_HEADS = 32, 4


def mha_inputs(g, tgt=6, src=6, masked=False):
    ref = nn.MultiheadAttention(D_MODEL, N_HEADS, batch_first=True)
    x = {"state": random_state(ref, g), "q": randn(g, 4, tgt, D_MODEL),
         "k": randn(g, 4, src, D_MODEL), "v": randn(g, 4, src, D_MODEL)}
    if masked:
        x["mask"] = padding_mask(g, 4, src)
    return x


def mha_reference(x):
    ref = with_state(nn.MultiheadAttention(D_MODEL, N_HEADS, batch_first=True), x["state"])
    T, S = x["q"].shape[1], x["k"].shape[1]
    kwargs = {}
    if "mask" in x:
        kwargs = {"key_padding_mask": x["mask"],
                  "attn_mask": torch.ones(T, S, dtype=torch.bool).triu(1)}
    with torch.no_grad():
        return ref(x["q"], x["k"], x["v"], need_weights=False, **kwargs)[0]


def mha_call(m, x, device):
    mha = load_state(m.MultiheadAttention(D_MODEL, N_HEADS), mha_state("", x["state"], D_MODEL), device)
    with torch.no_grad():
        if "mask" in x:
            return mha(x["q"], x["k"], x["v"], key_padding_mask=x["mask"], causal=True)
        return mha(x["q"], x["k"], x["v"])


suite.add(Case("mha/self_attention", 3, mha_inputs, mha_call, reference=mha_reference,
               tol=1e-3, hint="head h owns channels h*d_head..(h+1)*d_head of each projection"))
suite.add(Case("mha/cross_lengths", 2, lambda g: mha_inputs(g, tgt=5, src=3), mha_call,
               reference=mha_reference, tol=1e-3,
               hint="queries and keys may have different lengths"))
suite.add(Case("mha/padding_and_causal", 3, lambda g: mha_inputs(g, masked=True), mha_call,
               reference=mha_reference, tol=1e-3,
               hint="repeat the (B, S) mask once per head, in the same (batch, head) order"))


# ---------------------------------------------------------------------------------------
# Part 4. Layer norm, feed-forward, positions
# ---------------------------------------------------------------------------------------

def layer_norm_inputs(g):
    return {"x": randn(g, 3, 5, 16, scale=3.0) + 2.0, "weight": randn(g, 16) + 1.0,
            "bias": randn(g, 16), "source": linspace(-0.4, 0.6, 2, 4)}


def layer_norm_reference(x):
    return {"random": F.layer_norm(x["x"], (16,), x["weight"], x["bias"], eps=1e-5),
            "source": F.layer_norm(x["source"], (4,), eps=1e-10)}


def layer_norm_call(m, x, device):
    ln = load_state(m.LayerNorm(16), {"weight": x["weight"], "bias": x["bias"]}, device)
    with torch.no_grad():
        return {"random": ln(x["x"]), "source": m.LayerNorm(4, eps=1e-10)(x["source"])}


suite.add(Case("layernorm/vs_torch", 2, layer_norm_inputs, layer_norm_call,
               reference=layer_norm_reference, tol=1e-4,
               hint="normalize over the last dim with the population variance (unbiased=False)"))


def ffn_inputs(g):
    return {"state": {"fc1.weight": randn(g, 24, 8), "fc1.bias": randn(g, 24),
                      "fc2.weight": randn(g, 8, 24), "fc2.bias": randn(g, 8)},
            "x": randn(g, 2, 5, 8)}


def ffn_call(m, x, device):
    with torch.no_grad():
        return load_state(m.FeedForward(8, 24), x["state"], device)(x["x"])


suite.add(Case("ffn/forward", 1, ffn_inputs, ffn_call, tol=1e-5,
               hint="fc2(relu(fc1(x)))"))


suite.add(Case(
    "positions/sinusoidal", 2, lambda g: {"sizes": [(4, 4), (5, 3), (50, 64)]},
    lambda m, x, device: {f"{p}x{d}": m.sinusoidal_positions(p, d) for p, d in x["sizes"]},
    tol=1e-4, hint="each sin/cos pair (2i, 2i+1) shares the frequency 1/10000^(2i/d_model)"))


def make_positions_inputs(g):
    ids = torch.randint(0, 16, (3, 7), generator=g)
    return {"ids": ids.masked_fill(padding_mask(g, 3, 7), PAD)}


def make_positions_call(m, x, device):
    model = m.Transformer(17, PAD, EOS, 16, 1, 8, 2, 16, 0.0)
    ids = x["ids"]
    return {"int64": model.make_positions(ids, ids.eq(PAD)),
            "int32": model.make_positions(ids.int(), ids.eq(PAD))}


suite.add(Case("positions/make_positions", 1, make_positions_inputs, make_positions_call,
               hint="0..L-1 in every row, same shape and dtype as input_ids"))


# ---------------------------------------------------------------------------------------
# Part 5. Encoder and decoder layers, against torch.nn.Transformer*Layer
# ---------------------------------------------------------------------------------------

D_FFN = 64


def torch_layer(decoder: bool) -> nn.Module:
    cls = nn.TransformerDecoderLayer if decoder else nn.TransformerEncoderLayer
    return cls(D_MODEL, N_HEADS, dim_feedforward=D_FFN, dropout=0.0, batch_first=True)


def encoder_inputs(g):
    return {"state": random_state(torch_layer(False), g), "x": randn(g, 4, 5, D_MODEL),
            "mask": padding_mask(g, 4, 5, torch.long)}  # an int64 mask, as in the source


def encoder_reference(x):
    with torch.no_grad():
        return with_state(torch_layer(False), x["state"])(
            x["x"], src_key_padding_mask=x["mask"].bool())


def encoder_call(m, x, device):
    layer = load_state(m.TransformerLayer(False, D_MODEL, N_HEADS, D_FFN, 0.0),
                 layer_state(x["state"], D_MODEL, False), device)
    with torch.no_grad():
        return layer(x["x"], x["mask"])


suite.add(Case("layer/encoder_vs_torch", 3, encoder_inputs, encoder_call,
               reference=encoder_reference, tol=1e-3,
               hint="post-LN: x = LN(x + dropout(sublayer(x))) around attention and the FFN"))


def decoder_inputs(g):
    x = {"state": random_state(torch_layer(True), g), "x": randn(g, 3, 6, D_MODEL),
         "memory": randn(g, 3, 4, D_MODEL), "mask": padding_mask(g, 3, 6),
         "memory_mask": padding_mask(g, 3, 4), "noise": randn(g, 3, 6, D_MODEL)}
    x["cut"] = torch.randint(1, 5, (), generator=g)
    return x


def decoder_reference(x):
    layer = with_state(torch_layer(True), x["state"])
    T = x["x"].shape[1]
    with torch.no_grad():
        def run(inp):
            return layer(inp, x["memory"], tgt_mask=torch.ones(T, T, dtype=torch.bool).triu(1),
                         tgt_key_padding_mask=x["mask"], memory_key_padding_mask=x["memory_mask"])
        return {"out": run(x["x"]), "changed": run(changed_future(x)), "cut": x["cut"]}


def changed_future(x):
    cut = int(x["cut"])
    changed = x["x"].clone()
    changed[:, cut:] = x["noise"][:, cut:]
    return changed


def decoder_call(m, x, device):
    layer = load_state(m.TransformerLayer(True, D_MODEL, N_HEADS, D_FFN, 0.0),
                 layer_state(x["state"], D_MODEL, True), device)
    with torch.no_grad():
        def run(inp):
            return layer(inp, x["mask"], x["memory"], x["memory_mask"])
        return {"out": run(x["x"]), "changed": run(changed_future(x)), "cut": x["cut"]}


suite.add(Case(
    "layer/decoder_vs_torch", 4, decoder_inputs, decoder_call, reference=decoder_reference,
    tol=1e-3,
    properties=[Property(same_prefix("out", "changed", "cut"),
                         "the decoder layer sees the future: output at t changed when inputs "
                         "after t changed (self-attention needs causal=True)")],
    hint="self-attention (causal) -> cross-attention on encoder_out -> FFN, each post-LN"))


# ---------------------------------------------------------------------------------------
# Part 6. The encoder-decoder model and greedy decoding
# ---------------------------------------------------------------------------------------

MODEL = dict(n_words=len(SOURCE_VOCAB), pad_id=PAD, eos_id=EOS, max_len=16, n_layers=2,
             d_model=D_MODEL, n_heads=N_HEADS, d_ffn=D_FFN, p_drop=0.0)


def model_state(g) -> dict:
    """Random weights under the assignment's parameter names (the contract)."""
    d = D_MODEL
    state = {"emb_word.weight": randn(g, MODEL["n_words"], d, scale=0.5),
             "emb_pos.weight": randn(g, MODEL["max_len"], d, scale=0.5),
             "emb_ln.weight": 1 + randn(g, d, scale=0.1), "emb_ln.bias": randn(g, d, scale=0.1),
             "lm_head.bias": randn(g, MODEL["n_words"], scale=0.1)}
    state["lm_head.weight"] = state["emb_word.weight"]
    for side, decoder in (("encoder_layers", False), ("decoder_layers", True)):
        for i in range(MODEL["n_layers"]):
            torch_state = random_state(torch_layer(decoder), g, scale=0.15)
            for name in ("norm1", "norm2", "norm3"):
                if f"{name}.weight" in torch_state:
                    torch_state[f"{name}.weight"] += 1.0
            state.update(prefixed(f"{side}.{i}.", layer_state(torch_state, d, decoder)))
    return state


def model_inputs(g):
    B, S, T = 4, 9, 5
    ids = torch.randint(0, 16, (B, S), generator=g)
    ids = ids.masked_fill(padding_mask(g, B, S), PAD)
    labels = torch.randint(0, 16, (B, T), generator=g)
    labels[0, -2:] = -100  # ignored by the loss
    cut = torch.randint(1, T - 1, (), generator=g)
    changed = labels.clone()
    changed[:, int(cut) + 1:] = torch.randint(0, 16, (B, T - int(cut) - 1), generator=g)
    return {"state": model_state(g), "ids": ids, "labels": labels, "changed": changed, "cut": cut}


def build_model(m, x, device):
    return load_state(m.Transformer(**MODEL), x["state"], device)


def model_call(m, x, device):
    model = build_model(m, x, device)
    with torch.no_grad():
        logits, loss = model(x["ids"], x["labels"])
        changed, _ = model(x["ids"], x["changed"])
    # Decoder input t is label t-1, so logits up to cut+1 may only depend on labels <= cut.
    return {"logits": logits, "loss": loss, "changed": changed, "cut": x["cut"] + 1}


def shift_right_inputs(g):
    labels = torch.randint(0, 15, (4, 6), generator=g)
    lengths = torch.randint(2, 7, (4,), generator=g)
    return {"labels": labels.masked_fill(torch.arange(6)[None, :] >= lengths[:, None], -100)}


suite.add(Case(
    "model/shift_right", 1, shift_right_inputs,
    lambda m, x, device: m.Transformer(**MODEL).shift_right(x["labels"]),
    hint="[EOS, labels[:, :-1]], with every -100 replaced by PAD"))


suite.add(Case(
    "model/forward", 4, model_inputs, model_call, tol=1e-3,
    properties=[Property(same_prefix("logits", "changed", "cut"),
                         "the model is not causal: logits at t changed when labels after t "
                         "changed")],
    hint="decoder input = [EOS, labels[:, :-1]] with -100 -> PAD; tied lm_head; ignore -100"))


def decode_inputs(g):
    x = model_inputs(g)
    return {"state": x["state"], "ids": x["ids"]}


def decode_call(m, x, device):
    return m.greedy_decode(build_model(m, x, device), x["ids"], 6)


suite.add(Case("model/greedy_decode", 2, decode_inputs, decode_call,
               hint="start from EOS, append argmax of the last position, PAD after EOS"))


# ---------------------------------------------------------------------------------------
# Training: the arithmetic task, scored on held-out problems
# ---------------------------------------------------------------------------------------

CPU_PROFILE = dict(model=dict(max_len=16, n_layers=2, d_model=64, n_heads=4, d_ffn=256,
                              p_drop=0.0),
                   steps=1000, batch_size=128, lr=2e-3)
MIN_ACCURACY = 0.80


def reference_tokens(text: str) -> list[int]:
    """Tokenization is graded above; the training case uses the reference tokenizer."""
    ids = []
    for word in text.split():
        ids.extend([SOURCE_VOCAB.index(word)] if word in SOURCE_VOCAB[10:]
                   else [SOURCE_VOCAB.index(digit) for digit in word])
    return ids


def arithmetic_inputs(g):
    train, held_out = arith.split_problems(held_out=0.1, seed=int(torch.randint(1000, (), generator=g)))
    train_ids, train_labels = arith.encode_problems(train, reference_tokens)
    test_ids, _ = arith.encode_problems(held_out, reference_tokens)
    return {"train_ids": train_ids.to(torch.uint8), "train_labels": train_labels.to(torch.uint8),
            "test_ids": test_ids.to(torch.uint8)}  # the answers stay with the grader


def arithmetic_reference(x):
    """The correct answers of the held-out problems, read back from their token ids."""
    problems = [arith.parse_expression([SOURCE_VOCAB[i] for i in row]) for row in x["test_ids"].tolist()]
    return arith.encode_problems(problems, reference_tokens)[1]


def arithmetic_call(m, x, device):
    from dlkit.train import predict_in_batches, train_seq2seq
    profile = CPU_PROFILE
    model = m.Transformer(len(SOURCE_VOCAB), PAD, EOS, **profile["model"])
    train_seq2seq(model, x["train_ids"].long(), x["train_labels"].long(), steps=profile["steps"],
                  batch_size=profile["batch_size"], lr=profile["lr"], device=device,
                  progress=False)
    return predict_in_batches(lambda ids: m.greedy_decode(model, ids, 5),
                              x["test_ids"].long(), device=device)


suite.add(Case(
    "train/arithmetic", 10, arithmetic_inputs, arithmetic_call, reference=arithmetic_reference,
    min_accuracy=MIN_ACCURACY, time_limit=900.0,
    hint="train the other parts first: this case trains your Transformer from scratch"))
