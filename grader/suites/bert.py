"""The graded cases of the `bert` assignment (BERT from scratch, masked-LM pretraining,
fine-tuning a frozen pretrained BERT, and its attention maps).

Exact cases run in float64 with weights drawn from the case's seeded generator under the
assignment's parameter names. Expected values come from `solutions/bert_oracles.py`
(instructor side only): formulas written independently of the reference where one is
short (scaled dot-product attention, the multi-head layer), `torch.nn.TransformerEncoderLayer`
with copied weights (the block: GELU, post-LN, key padding mask) and `transformers`' own
attention maps (`output_attentions=True`, for `bert_attention`); from the reference
elsewhere. Correct
code lands around 1e-15 whatever order it adds in, and about 1e-7 with a float32 constant
(the scale as `torch.sqrt(torch.tensor(d, dtype=torch.float32))`, an equivalent); every
known mistake moves an output by 1e-2 of its scale or more. TOL = 1e-5 sits 100x above the
second and 1000x below the third (the tolerance policy; `python -m grader audit bert`).
Dropout at a rate above 0 is checked exactly: rate 1.0 in training mode (everything
dropped: the result is known), and the block's two dropouts replaced by fixed masks (where
each is applied, and how often). `device/meta` runs the parts on the meta device.

`mask_inputs` is specified down to its draws (rand, rand, randint with the caller's
generator, made on the generator's device), so under a fixed CPU generator the masked text,
the labels and the generator's state afterwards are compared exactly; on the source's
setting its proportions must also lie within 5 standard deviations of the expected 0.15
labelled, 0.12 masked and 0.135 changed.

The training case (end of this file) fine-tunes the student's BERTGRUSentiment, wrapped
around the frozen pretrained MiniLM, inside the sandbox on speeches from Shakespeare's
comedies and tragedies; it returns the head's weights (not BERT's: it stays frozen) and the
reference code classifies held-out speeches the child never receives.
"""
import math

import torch
from torch import nn

from dlkit import bert_data
from grader import policy
from grader.cases import Case, Property, Suite
from grader.inputs import (ELSEWHERE, PlainSGD, device_checked, elsewhere, load_state,
                           on_one_thread, randn, torch_threads)

suite = Suite("bert")

# The library-shortcut policy (instructors: edit here). Per part, the library calls that would
# do its work; a case graded on that part loses its points when the part uses one of them
# (grader/policy.py). The part's docstring in solutions/bert.py says what is off limits.
suite.ban("scaled_dot_product", policy.SDPA, cases=["attention/"])
suite.ban("MultiHeadAttention.forward", policy.MULTI_HEAD, cases=["mha/forward"])
suite.ban("TransformerBlock", policy.TRANSFORMER_LAYERS, cases=["block/"])
suite.ban("BertModel", policy.TRANSFORMER_LAYERS, cases=["bert/"])  # an import of the
# library's BertModel that shadows the class is a named mistake of its own (bert/forward)
suite.ban("mask_inputs", ("transformers.DataCollatorForLanguageModeling",),
          cases=["mlm/mask_inputs", "mlm/source_proportions"])
suite.ban("bert_attention", ("output_attentions",), cases=["inside/"])

# Later parts run the student's earlier ones: their failures name the part to fix first.
suite.builds_on(["mha/forward", "block/", "bert/", "mlm/pretraining_step", "mlm/loss_falls",
                 "device/"], "scaled_dot_product", ["attention/scaled_dot_product"])
suite.builds_on(["block/", "bert/", "mlm/pretraining_step", "mlm/loss_falls", "device/"],
                "MultiHeadAttention", ["mha/forward"])
suite.builds_on(["bert/", "mlm/pretraining_step", "mlm/loss_falls", "device/"],
                "TransformerBlock", ["block/vs_torch_encoder_layer", "block/dropout"])
suite.builds_on(["mlm/pretraining_step", "mlm/loss_falls"], "BertModel", ["bert/forward"])
suite.builds_on(["mlm/pretraining_step", "mlm/loss_falls"], "mask_inputs",
                ["mlm/mask_inputs"])
suite.builds_on(["finetune/train_epoch", "finetune/evaluate", "finetune/predict_sentiment",
                 "train/"], "BERTGRUSentiment", ["finetune/bert_gru_forward"])
suite.builds_on(["finetune/train_epoch", "finetune/evaluate"], "binary_accuracy",
                ["finetune/binary_accuracy"])
suite.builds_on(["train/"], "train", ["finetune/train_epoch"])

F64 = torch.float64
TOL = 1e-5  # float64 cases, float32 constants allowed (see the module docstring)

MHA = dict(embed_dim=12, n_heads=3, attn_drop_rate=0.0)
BLOCK = dict(embed_dim=12, n_heads=3, attn_drop_rate=0.0, layer_drop_rate=0.0)
BERT = dict(n_layers=2, vocab_size=11, embed_dim=12, n_heads=3, attn_drop_rate=0.0,
            layer_drop_rate=0.0)
TINY_BERT = dict(vocab_size=50, hidden_size=8, layers=2, heads=2, max_positions=32)
HEAD = dict(hidden_dim=5, output_dim=1, n_layers=2, bidirectional=True, dropout=0.0)


def add(case: Case) -> Case:
    """Add an exact (non-training) case, run on one torch thread."""
    return suite.add(on_one_thread(case))


# ---------------------------------------------------------------------------------------
# Builders
# ---------------------------------------------------------------------------------------

def reference_bert():
    """The reference solution module (fixture builder and audit only: inputs are never
    built inside the sandbox), imported without replacing a `bert` module already loaded."""
    import sys
    from dlkit.utils import REPO_ROOT, load_assignment
    saved = sys.modules.get("bert")
    module = load_assignment("bert", REPO_ROOT / "solutions")
    if saved is not None:
        sys.modules["bert"] = saved
    return module


def random_state(module: nn.Module, g) -> dict:
    """The module's state_dict redrawn from `g` in float64: matrices ~ N(0, 1/fan_in)
    (embeddings N(0, 1)), LayerNorm weights near 1, biases small."""
    norms = {name for name, sub in module.named_modules() if isinstance(sub, nn.LayerNorm)}
    embeddings = {name for name, sub in module.named_modules() if isinstance(sub, nn.Embedding)}
    state = {}
    for key, value in module.state_dict().items():
        owner = key.rsplit(".", 1)[0] if "." in key else ""
        if not value.is_floating_point():
            state[key] = value.clone()
        elif owner in embeddings or "embeddings" in key and value.dim() == 2:
            state[key] = randn(g, *value.shape, dtype=F64)
        elif value.dim() == 2:
            state[key] = randn(g, *value.shape, dtype=F64) / math.sqrt(value.shape[1])
        elif (owner in norms or owner.endswith("LayerNorm")) and key.endswith("weight"):
            state[key] = 1.0 + randn(g, *value.shape, scale=0.1, dtype=F64)
        else:
            state[key] = randn(g, *value.shape, scale=0.1, dtype=F64)
    return state


_SHAPES: dict = {}


def state_for(name: str, g, **config) -> dict:
    """Random float64 weights for the reference's `name(**config)`, by parameter name."""
    key = (name, tuple(sorted(config.items())))
    if key not in _SHAPES:
        _SHAPES[key] = getattr(reference_bert(), name)(**config)
    return random_state(_SHAPES[key], g)


def build(m, name: str, config: dict, state: dict, device):
    return load_state(getattr(m, name)(**config), state, device, dtype=F64)


def tiny_bert_state(g) -> dict:
    return random_state(bert_data.tiny_bert(**TINY_BERT), g)


def tiny_bert(state: dict, device):
    """The small `transformers` BertModel with `state`, float64, eval mode."""
    return load_state(bert_data.tiny_bert(**TINY_BERT), state, device, dtype=F64)


def key_mask(g, B: int, T: int) -> torch.Tensor:
    """(B, T) float 0/1, 1 = hidden key; every row keeps its first key."""
    mask = (torch.rand(B, T, generator=g) < 0.4).to(F64)
    mask[:, 0] = 0
    return mask


# ---------------------------------------------------------------------------------------
# Part 1. Attention, the multi-head layer, the block, BERT
# ---------------------------------------------------------------------------------------

# The source's printed demo (seed 1234): q, k, v (1, 1, 3, 2), mask (1, 3), no dropout.
DEMO_Q = [[0.0461, 0.4024], [-1.0115, 0.2167], [-0.6123, 0.5036]]
DEMO_K = [[0.2310, 0.6931], [-0.2669, 2.1785], [0.1021, -0.2590]]
DEMO_V = [[-0.1549, -1.3706], [-0.1319, 0.8848], [-0.2611, 0.6104]]
DEMO_MASK = [[0.0, 1.0, 0.0]]
DEMO_VALUES = [[-0.2007, -0.5155], [-0.2066, -0.4067], [-0.2005, -0.5194]]  # as printed
DEMO_ATTENTION = [[0.5683, 0.0, 0.4317], [0.5134, 0.0, 0.4866], [0.5703, 0.0, 0.4297]]


def attention_inputs(g):
    B, H, T, D = 2, 3, 5, 4
    demo = {name: torch.tensor(value, dtype=F64)[None, None]
            for name, value in (("q", DEMO_Q), ("k", DEMO_K), ("v", DEMO_V))}
    return {"demo": {**demo, "mask": torch.tensor(DEMO_MASK, dtype=F64)},
            "q": randn(g, B, H, T, D, dtype=F64), "k": randn(g, B, H, T, D, dtype=F64),
            "v": randn(g, B, H, T, D, dtype=F64), "mask": key_mask(g, B, T)}


def attention_call(m, x, device):
    demo = x["demo"]
    dv, dw = m.scaled_dot_product(demo["q"], demo["k"], demo["v"], attn_drop_rate=0.0,
                                  mask=demo["mask"])
    mv, mw = m.scaled_dot_product(x["q"], x["k"], x["v"], 0.0, x["mask"])
    nv, nw = m.scaled_dot_product(x["q"], x["k"], x["v"], 0.0)
    bv, _ = m.scaled_dot_product(x["q"], x["k"], x["v"], 0.0, x["mask"].bool())
    return {"demo_values": dv, "demo_attention": dw, "values": mv, "attention": mw,
            "no_mask_values": nv, "no_mask_attention": nw, "bool_mask_values": bv}


add(Case("attention/scaled_dot_product", 4, attention_inputs, attention_call,
         tol=TOL,
         properties=[Property(lambda o: bool((o["demo_attention"][..., 1] == 0).all()),
                              "the masked key column must get weight exactly 0",
                              "masked column is 0")],
         hint="scores scaled by 1/sqrt(d); the mask (B, T) hides key COLUMNS (every query ignores "
              "a masked key), not query rows; softmax over the keys; dropout on the weights; then "
              "the values"))


DROP = 0.5


def dropout_inputs(g):
    return {"q": randn(g, 4, 2, 16, 8, dtype=F64), "k": randn(g, 4, 2, 16, 8, dtype=F64),
            "v": randn(g, 4, 2, 16, 8, dtype=F64)}


def dropout_call(m, x, device):
    torch.manual_seed(0)
    _, kept = m.scaled_dot_product(x["q"], x["k"], x["v"], 0.0)
    _, dropped = m.scaled_dot_product(x["q"], x["k"], x["v"], DROP)
    zero = dropped == 0
    scaled = torch.isclose(dropped, kept / (1 - DROP), rtol=1e-9, atol=0.0)
    fraction = zero.double().mean()
    return {"zero_or_scaled": (zero | scaled).all(), "some_dropped": fraction > 0.3,
            "not_all_dropped": fraction < 0.7}


add(Case("attention/dropout", 1, dropout_inputs, dropout_call, tol=TOL,
         hint="dropout on the attention weights at attn_drop_rate: each weight is zeroed with "
              "probability p and the others are divided by 1 - p"))


def mha_inputs(g):
    B, T, E = 3, 6, MHA["embed_dim"]
    return {"state": state_for("MultiHeadAttention", g, **MHA), "x": randn(g, B, T, E, dtype=F64),
            "mask": key_mask(g, B, T), "one": randn(g, 1, 4, E, dtype=F64)}


def mha_call(m, x, device):
    layer = build(m, "MultiHeadAttention", MHA, x["state"], device)
    out = {"masked": layer(x["x"], x["mask"]), "no_mask": layer(x["x"]),
           "batch_of_one": layer(x["one"])}
    dropping = build(m, "MultiHeadAttention", {**MHA, "attn_drop_rate": 0.9}, x["state"], device)
    torch.manual_seed(0)
    out["eval_without_dropout"] = dropping.eval()(x["x"], x["mask"])
    everything_dropped = build(m, "MultiHeadAttention", {**MHA, "attn_drop_rate": 1.0},
                               x["state"], device).train()
    out["train_rate_1"] = everything_dropped(x["x"], x["mask"])  # o_proj's bias alone
    torch.manual_seed(0)  # the source's shape check: E 16, 4 heads, batch 3, length 2
    source = m.MultiHeadAttention(16, 4, 0.1).to(device)
    embeds, mask = torch.randn(3, 2, 16).to(device), torch.zeros(3, 2).to(device)
    out["source_shape"] = torch.tensor(tuple(source(embeds, mask).shape))
    return out


add(Case("mha/forward", 4, mha_inputs, mha_call, tol=TOL,
         hint="the fused projection reshaped to (B, T, heads, 3 * head_dim) keeps each head's q, "
              "k, v together: move the heads before time, split the last dimension in three; "
              "dropout only in training mode; merge the heads back before o_proj"))


def init_inputs(g):
    return {"seed": torch.randint(0, 2**31 - 1, (1,), generator=g)}


def init_call(m, x, device):
    torch.manual_seed(int(x["seed"]))
    layer = m.MultiHeadAttention(24, 4, 0.1)
    out = {}
    for name, fan_out in (("qkv_proj", 72), ("o_proj", 24)):
        w, b = getattr(layer, name).weight, getattr(layer, name).bias
        bound = math.sqrt(6 / (24 + fan_out))
        out[name] = {"shape": torch.tensor(tuple(w.shape)), "zero_bias": (b == 0).all(),
                     "within_xavier_bound": (w.abs() <= bound).all(),
                     "fills_the_bound": w.abs().max() > 0.9 * bound}
    return out


add(Case("mha/reset_parameters", 1, init_inputs, init_call, tol=TOL,
         hint="qkv_proj maps E to 3E and o_proj E to E; _reset_parameters draws Xavier-uniform "
              "weights and zero biases"))


def block_inputs(g):
    B, T, E = 3, 6, BLOCK["embed_dim"]
    return {"state": state_for("TransformerBlock", g, **BLOCK), "x": randn(g, B, T, E, dtype=F64),
            "mask": key_mask(g, B, T)}


def block_call(m, x, device):
    block = build(m, "TransformerBlock", BLOCK, x["state"], device)
    out, mask = block((x["x"], x["mask"]))
    plain, _ = block((x["x"], None))
    chained, _ = nn.Sequential(block, block)((x["x"], None))
    return {"masked": out, "no_mask": plain, "mask_passed_on": mask, "chained": chained}


add(Case("block/vs_torch_encoder_layer", 4, block_inputs, block_call, tol=TOL,
         hint="post-LN: norm1 of x plus the dropped-out attention, then norm2 of that plus the "
              "feed-forward (Linear E->E, GELU, Linear E->E, Dropout); return the pair (output, "
              "mask)"))


class FixedMask(nn.Module):
    """A stand-in for one of the block's nn.Dropout layers: a fixed 0/2 pattern (T, E), what
    dropout at rate 0.5 does with one draw, so where each dropout is applied (and how often)
    shows in the output exactly."""

    def __init__(self, pattern: torch.Tensor):
        super().__init__()
        self.pattern = pattern

    def forward(self, x):
        return x * self.pattern


def block_dropout_inputs(g):
    x = block_inputs(g)
    T, E = x["x"].shape[1:]
    x["patterns"] = [2.0 * (torch.rand(T, E, generator=g) < 0.5).to(F64) for _ in range(2)]
    return x


def block_dropout_call(m, x, device):
    """Training mode with either rate at 1.0 (what is dropped is known: all of it), eval
    mode at the same rates (nothing dropped), and the two dropouts as fixed masks."""
    out = {}
    for name, rates in (("layer_rate_1", dict(layer_drop_rate=1.0)),
                        ("attention_rate_1", dict(attn_drop_rate=1.0))):
        block = build(m, "TransformerBlock", {**BLOCK, **rates}, x["state"], device).train()
        out[name], _ = block((x["x"], x["mask"]))
        out[f"{name}_in_eval"], _ = block.eval()((x["x"], x["mask"]))
    block = build(m, "TransformerBlock", BLOCK, x["state"], device).train()
    block.dropout = FixedMask(x["patterns"][0])
    block.ffn[3] = FixedMask(x["patterns"][1])
    out["fixed_masks"], _ = block((x["x"], x["mask"]))
    return out


add(Case("block/dropout", 2, block_dropout_inputs, block_dropout_call, tol=TOL,
         hint="`dropout` (rate layer_drop_rate) on the attention's output before the first "
              "residual; the FFN's last layer is its own Dropout(layer_drop_rate), applied once "
              "(not `dropout` again); attention dropout at attn_drop_rate; none in eval mode"))


def bert_inputs(g):
    B, T = 3, 7
    text = torch.randint(0, BERT["vocab_size"] + 1, (B, T), generator=g)  # the [MASK] id too
    return {"state": state_for("BertModel", g, **BERT), "text": text, "mask": key_mask(g, B, T)}


def own_class(cls) -> bool:
    """False when the name is the library's BertModel (an import that shadows yours)."""
    return not getattr(cls, "__module__", "").startswith("transformers")


def bert_call(m, x, device):
    B, T = x["text"].shape
    if not own_class(m.BertModel):
        empty = torch.zeros(B, T, BERT["vocab_size"], dtype=F64)
        return {"logits": empty, "masked_logits": empty, "train_layer_rate_1": empty,
                "own_class": torch.tensor(False),
                "source_shape": torch.tensor([0, 0, 0])}
    model = build(m, "BertModel", BERT, x["state"], device)
    torch.manual_seed(0)  # the source's shape check: 2 layers, vocabulary 10, E 16, 4 heads
    source = m.BertModel(2, 10, 16, 4, 0.1, 0.1).to(device)
    dropping = build(m, "BertModel", {**BERT, "layer_drop_rate": 1.0}, x["state"], device)
    return {"logits": model(x["text"]), "masked_logits": model(x["text"], x["mask"]),
            # training mode, layer_drop_rate 1.0: the positions' dropout zeroes the stream
            "train_layer_rate_1": dropping.train()(x["text"], x["mask"]),
            "own_class": torch.tensor(True),
            "source_shape": torch.tensor(tuple(source(torch.randint(0, 10, (3, 2)).to(device))
                                               .shape))}


add(Case("bert/forward", 3, bert_inputs, bert_call, tol=TOL,
         hint="embedding (vocab_size + 1 rows), positions (dropout at layer_drop_rate), the "
              "blocks on (x, mask) pairs, then "
              "the masked-LM head; keep the name BertModel your own class (an import of the "
              "library's would shadow it)"))


# ---------------------------------------------------------------------------------------
# Part 2. Masked-LM pretraining
# ---------------------------------------------------------------------------------------

MASK_ID, VOCAB = 30, 30  # the mask token is the extra id vocab_size, as in BertModel


def mask_inputs_inputs(g):
    text = torch.randint(1, VOCAB // 2, (6, 40), generator=g)  # random ids reach the rest
    lengths = torch.randint(10, 41, (6,), generator=g)
    text[torch.arange(40)[None] >= lengths[:, None]] = 0                 # right padding
    return {"text": text, "seed": torch.randint(0, 2**31 - 1, (1,), generator=g)}


def after_draws(generator) -> torch.Tensor:
    """The generator's next draws: equal only when the same draws were made before."""
    return torch.rand(4, generator=generator, dtype=F64)


def mask_inputs_call(m, x, device):
    """Draws from a CPU generator (the contract: draws are made on the generator's device,
    whatever text's device)."""
    text, seed = x["text"], int(x["seed"])
    before = text.clone()

    def run(**kwargs):
        generator = torch.Generator().manual_seed(seed)
        masked, labels = m.mask_inputs(text, MASK_ID, VOCAB, generator=generator, **kwargs)
        return {"masked_text": masked, "labels": labels, "generator_after": after_draws(generator)}
    torch.manual_seed(seed)  # generator None: the global CPU generator
    masked, labels = m.mask_inputs(text, MASK_ID, VOCAB)
    global_generator = {"masked_text": masked, "labels": labels,
                        "generator_after": torch.rand(4, dtype=F64)}
    return {"defaults": run(), "rate_0_4": run(mask_rate=0.4), "only_mask": run(only_mask=True),
            "global_generator": global_generator,
            "no_padding": run(pad_id=None, mask_rate=0.3),
            "input_unchanged": torch.tensor(torch.equal(before, text))}


add(Case("mlm/mask_inputs", 4, mask_inputs_inputs, mask_inputs_call, tol=TOL,
         hint="selected: the first uniform draw below mask_rate, never padding; of those, the "
              "second draw below 0.8 gives the mask token, below 0.9 a random id from the whole "
              "vocabulary, else the token stays; labels are -100 where not selected; all three "
              "draws are made every time (only_mask too), on the generator's device"))


SOURCE_MLM = dict(batch=128, length=128, vocab_size=100)  # the source's pretraining setting


def proportions(masked, labels, text, mask_id):
    n = text.numel()
    return {"changed": (masked != text).sum().double() / n,
            "masked": (masked == mask_id).sum().double() / n,
            "labelled": (labels != -100).sum().double() / n}


def within(p: float, n: int, value) -> bool:
    """value within 5 standard deviations of a binomial proportion p over n draws."""
    return abs(float(value) - p) <= 5 * math.sqrt(p * (1 - p) / n)


N_SOURCE = SOURCE_MLM["batch"] * SOURCE_MLM["length"]
P_LABELLED, P_MASKED = 0.15, 0.15 * 0.8
P_CHANGED = 0.15 * (0.8 + 0.1 * (1 - 1 / SOURCE_MLM["vocab_size"]))  # a random token may be itself


def source_mlm_inputs(g):
    shape = (SOURCE_MLM["batch"], SOURCE_MLM["length"])
    return {"text": torch.randint(1, SOURCE_MLM["vocab_size"], shape, generator=g,
                                  dtype=torch.int16),  # 4x smaller fixtures
            "seed": torch.randint(0, 2**31 - 1, (1,), generator=g)}


def source_mlm_call(m, x, device):
    text, V = x["text"].long(), SOURCE_MLM["vocab_size"]
    masked, labels = m.mask_inputs(text, V, V, 0.15, 0,
                                   generator=torch.Generator().manual_seed(int(x["seed"])))
    return proportions(masked, labels, text, V)


add(Case("mlm/source_proportions", 2, source_mlm_inputs, source_mlm_call, tol=TOL,
         properties=[Property(lambda o: within(P_LABELLED, N_SOURCE, o["labelled"]),
                              "about 15% of the tokens must be labelled", "0.15 labelled"),
                     Property(lambda o: within(P_MASKED, N_SOURCE, o["masked"]),
                              "about 12% (80% of 15%) must become [MASK]", "0.12 masked"),
                     Property(lambda o: within(P_CHANGED, N_SOURCE, o["changed"]),
                              "about 13.5% must change (mask or a different random token)",
                              "0.135 changed")],
         hint="15% selected; of those 80% [MASK], 10% a random id, 10% unchanged, chosen "
              "per token"))


STEP_RATE = 0.3


def replaced_by_padding(text: torch.Tensor, seed: int) -> bool:
    """Whether the first step's masking (the contract's three draws, pad id 0) turns a real
    token into a random id equal to the pad id 0."""
    g = torch.Generator().manual_seed(seed)
    select = (torch.rand(text.shape, generator=g) < STEP_RATE) & (text != 0)
    kind = torch.rand(text.shape, generator=g)
    random_tokens = torch.randint(0, VOCAB, text.shape, generator=g)
    return bool((select & (kind >= 0.8) & (kind < 0.9) & (random_tokens == 0)).any())


def step_inputs(g):
    """A seed whose first masking replaces a real token by the pad id 0 (about 7% of seeds
    do): only the original text says where the padding is."""
    x = mask_inputs_inputs(g)
    x["text"] = x["text"][:, :12].clone()
    x["text"][:, :2] = torch.randint(1, VOCAB, (6, 2), generator=g)     # no empty row
    x["state"] = state_for("BertModel", g, **{**BERT, "vocab_size": VOCAB})
    for _ in range(1000):  # about 1 in 15 seeds will do
        if replaced_by_padding(x["text"], int(x["seed"])):
            return x
        x["seed"] = torch.randint(0, 2**31 - 1, (1,), generator=g)
    raise RuntimeError("no seed replaces a real token by the pad id in 1000 tries")


def step_call(m, x, device):
    model = build(m, "BertModel", {**BERT, "vocab_size": VOCAB}, x["state"], device)
    model.train()  # dropout rates are 0: training mode changes nothing else
    optimizer = PlainSGD(model.parameters(), lr=0.5)
    generator = torch.Generator().manual_seed(int(x["seed"]))
    losses = [m.pretraining_step(model, optimizer, x["text"], MASK_ID, VOCAB, mask_rate=STEP_RATE,
                                 pad_id=pad_id, generator=generator) for pad_id in (0, 0, None)]
    return {"losses": torch.tensor(losses, dtype=F64),
            "python_floats": torch.tensor(all(type(loss) is float for loss in losses)),
            "weights": {k: v.detach() for k, v in model.state_dict().items()}}


add(Case("mlm/pretraining_step", 4, step_inputs, step_call, tol=TOL,
         hint="mask_inputs, then the model on the corrupted text with padding (text == pad_id "
              "of the original text) hidden; the "
              "cross-entropy of the labelled positions over the vocabulary; zero the gradients, "
              "backpropagate, step; return the loss as a float"))


LN_100 = math.log(100)
# The source's model (2 layers, E 64, 4 heads, vocabulary 100, dropout 0.1) on one batch of
# 16 sequences of 64 uniform random tokens, masked afresh at each of 20 AdamW steps (lr
# 3e-3, weight decay 0.01). Uniform tokens cannot be predicted beyond ln(99), so the loss
# starts a little above ln(100) (the initial logits' spread) and falls towards it.
# Measured (reference, seeds 0-9): first loss 4.70-4.85 (at most 0.24 from ln 100: bound
# 0.35); mean of the last three 4.53-4.60, a fall of 0.14-0.29 (threshold 0.05). Without
# loss.backward() the weights never move and the "fall" is masking noise, -0.10 to +0.09:
# that mistake is caught for certain by mlm/pretraining_step, not here.
MIN_FALL, STEPS, LR = 0.05, 20, 3e-3


def loss_curve_inputs(g):
    return {"text": torch.randint(1, SOURCE_MLM["vocab_size"], (16, 64), generator=g),
            "seed": torch.randint(0, 2**31 - 1, (1,), generator=g)}


def loss_curve_call(m, x, device):
    torch.manual_seed(int(x["seed"]))
    V = SOURCE_MLM["vocab_size"]
    model = m.BertModel(2, V, 64, 4, 0.1, 0.1).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.01)
    generator = torch.Generator().manual_seed(int(x["seed"]))
    losses = [float(m.pretraining_step(model, optimizer, x["text"], V, V, 0.15, 0,
                                       generator=generator)) for _ in range(STEPS)]
    first, last = losses[0], sum(losses[-3:]) / 3
    return {"first_near_ln_vocab": torch.tensor(abs(first - LN_100) < 0.35),
            "loss_falls": torch.tensor(last < first - MIN_FALL)}


# 20 steps on one thread: 1.5 s of CPU for the reference (in-process, this 2-core machine
# under load); 8 s of CPU is about 5x that.
add(Case("mlm/loss_falls", 2, loss_curve_inputs, loss_curve_call, tol=TOL, cpu_time=8.0,
         hint="at initialisation the loss is about ln(vocab_size) = 4.6; it must fall within a "
              "few steps (are the gradients computed before each optimiser step?)"))


# ---------------------------------------------------------------------------------------
# Part 3. Fine-tuning on a frozen BERT
# ---------------------------------------------------------------------------------------

def head_state(g, bert_state: dict, **config) -> dict:
    """Random float64 weights of BERTGRUSentiment(tiny bert, **config)."""
    key = ("BERTGRUSentiment", tuple(sorted(config.items())))
    if key not in _SHAPES:
        _SHAPES[key] = reference_bert().BERTGRUSentiment(bert_data.tiny_bert(**TINY_BERT),
                                                         **config)
    state = random_state(_SHAPES[key], g)
    state.update({f"bert.{k}": v for k, v in bert_state.items()})
    return state


def classifier(m, config: dict, state: dict, device):
    model = m.BERTGRUSentiment(bert_data.tiny_bert(**TINY_BERT), **config)
    return load_state(model, state, device, dtype=F64)


UNI = dict(hidden_dim=4, output_dim=2, n_layers=1, bidirectional=False, dropout=0.0)


def text_batch(g, B: int = 4, T: int = 9):
    return torch.randint(1, TINY_BERT["vocab_size"], (B, T), generator=g)


def gru_inputs(g):
    bert = tiny_bert_state(g)
    return {"bi": head_state(g, bert, **HEAD), "uni": head_state(g, bert, **UNI),
            "text": text_batch(g), "one": text_batch(g, 1, 5)}


def gru_call(m, x, device):
    bi, uni = classifier(m, HEAD, x["bi"], device), classifier(m, UNI, x["uni"], device)
    logits = bi(x["text"])
    logits.sum().backward()
    bert_grads = [p.grad for p in bi.bert.parameters() if p.grad is not None]
    everything_dropped = classifier(m, {**HEAD, "dropout": 1.0}, x["bi"], device).train()
    return {"bidirectional": logits.detach(), "unidirectional": uni(x["text"]).detach(),
            "train_dropout_1": everything_dropped(x["text"]).detach(),  # out's bias alone
            "batch_of_one": bi(x["one"]).detach(),
            "no_gradient_into_bert": torch.tensor(not bert_grads)}


add(Case("finetune/bert_gru_forward", 3, gru_inputs, gru_call, tol=TOL,
         hint="BERT's sequence output without gradients feeds the GRU; its final state (the last "
              "layer's two directions side by side when bidirectional) goes through dropout and "
              "the output layer"))


def accuracy_inputs(g):
    return {"preds": randn(g, 10, scale=2.0, dtype=F64),
            "y": torch.randint(0, 2, (10,), generator=g).to(F64)}


def accuracy_call(m, x, device):
    preds, y = x["preds"], x["y"]
    flipped = y.clone()
    flipped[: 2] = (preds[: 2] < 0).to(F64)  # the first two right by construction
    accuracy = m.binary_accuracy(preds, y)
    return {"accuracy": torch.as_tensor(accuracy).to(F64).reshape(()),
            "zero_dim_tensor": torch.tensor(isinstance(accuracy, torch.Tensor)
                                            and accuracy.dim() == 0),
            "eight_of_ten": torch.as_tensor(m.binary_accuracy(
                torch.tensor([3.0, -3, 3, -3, 3, -3, 3, -3, 3, 3], dtype=F64),
                torch.tensor([1.0, 0, 1, 0, 1, 0, 1, 0, 0, 0], dtype=F64))).to(F64).reshape(()),
            "first_two": torch.as_tensor(m.binary_accuracy(preds[:2], 1 - flipped[:2])).to(
                F64).reshape(())}


add(Case("finetune/binary_accuracy", 1, accuracy_inputs, accuracy_call, tol=TOL,
         hint="a logit above 0 predicts 1; the fraction of right predictions, 0.8 for 8 of 10"))


ONE = dict(hidden_dim=5, output_dim=1, n_layers=2, bidirectional=True, dropout=0.0)
DROPPING = {**ONE, "dropout": 0.5}


def loop_inputs(g):
    bert = tiny_bert_state(g)
    batches = [(text_batch(g, 4, T), torch.randint(0, 2, (4,), generator=g).to(F64))
               for T in (6, 9, 4)]
    return {"state": head_state(g, bert, **ONE), "texts": [t for t, _ in batches],
            "labels": [y for _, y in batches]}


def head_weights(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()
            if not k.startswith("bert.")}


def train_loop_call(m, x, device):
    model = classifier(m, ONE, x["state"], device)
    m.freeze_bert(model)
    optimizer = PlainSGD(model.parameters(), lr=0.3)
    loss, acc = m.train(model, list(zip(x["texts"], x["labels"])), optimizer,
                        nn.BCEWithLogitsLoss())
    return {"mean_loss": torch.tensor(float(loss), dtype=F64),
            "mean_accuracy": torch.tensor(float(acc), dtype=F64),
            "head": head_weights(model), "in_training_mode": torch.tensor(model.training)}


add(Case("finetune/train_epoch", 3, loop_inputs, train_loop_call, tol=TOL,
         hint="training mode; per batch: logits (B, 1) squeezed to (B,), the criterion and "
              "binary_accuracy, zero the gradients, backpropagate, step; return the means over "
              "the batches"))


def evaluate_loop_call(m, x, device):
    model = classifier(m, DROPPING, x["state"], device)
    model.train()  # evaluate must switch to eval mode itself (dropout 0.5 here)
    before = head_weights(model)
    torch.manual_seed(0)
    loss, acc = m.evaluate(model, list(zip(x["texts"], x["labels"])), nn.BCEWithLogitsLoss())
    after = head_weights(model)
    return {"mean_loss": torch.tensor(float(loss), dtype=F64),
            "mean_accuracy": torch.tensor(float(acc), dtype=F64),
            "unchanged": torch.tensor(all(torch.equal(before[k], after[k]) for k in before))}


add(Case("finetune/evaluate", 2, loop_inputs, evaluate_loop_call, tol=TOL,
         hint="evaluation mode and no gradients: the mean loss and binary_accuracy over the "
              "batches, no step"))


class WordTokenizer:
    """A stand-in for BERT's tokenizer with the interface predict_sentiment uses: words are
    tokens, each word's id is a fixed hash into 1..vocab_size - 3 (no file needed)."""
    cls_token_id, sep_token_id = 48, 49

    def tokenize(self, sentence: str) -> list[str]:
        return sentence.lower().split()

    def convert_tokens_to_ids(self, tokens):
        return [1 + sum(map(ord, t)) % (TINY_BERT["vocab_size"] - 3) for t in tokens]


SENTENCES = ("This film is great", "This film is terrible",
             "This film was actually good I loved the acting and I really enjoyed the music")


def predict_inputs(g):
    return {"state": head_state(g, tiny_bert_state(g), **ONE)}


def predict_call(m, x, device):
    model = classifier(m, DROPPING, x["state"], device)
    model.train()
    torch.manual_seed(0)
    probs = [m.predict_sentiment(model, WordTokenizer(), s) for s in SENTENCES]
    cut = m.predict_sentiment(model, WordTokenizer(), SENTENCES[2], max_input_length=6)
    return {"probabilities": torch.tensor(probs, dtype=F64),
            "truncated": torch.tensor(cut, dtype=F64),
            "python_floats": torch.tensor(all(type(p) is float for p in (*probs, cut)))}


add(Case("finetune/predict_sentiment", 2, predict_inputs, predict_call, tol=TOL,
         hint="at most max_input_length - 2 tokens between CLS and SEP, as a (1, T) batch in "
              "evaluation mode; `prediction` is the sigmoid of the logit (1, 1), returned as a "
              "float by prediction.item()"))


# ---------------------------------------------------------------------------------------
# Part 4. Attention maps of a pretrained BERT
# ---------------------------------------------------------------------------------------

def maps_inputs(g):
    B, T = 3, 8
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, 5:] = 0
    mask[2, 3:] = 0
    types = (torch.arange(T)[None] >= torch.tensor([[4], [3], [8]])).long()
    return {"bert": tiny_bert_state(g), "ids": text_batch(g, B, T), "types": types,
            "attention_mask": mask}


def maps_call(m, x, device):
    bert = tiny_bert(x["bert"], device)
    return {"padded_pairs": m.bert_attention(bert, x["ids"], x["types"], x["attention_mask"]),
            "defaults": m.bert_attention(bert, x["ids"])}


add(Case("inside/bert_attention", 3, maps_inputs, maps_call, tol=TOL,
         hint="layer l's input is hidden_states[l]; that layer's query and key projections split "
              "into heads (B, heads, T, d); softmax of the scaled scores with padding keys at "
              "-inf"))


# ---------------------------------------------------------------------------------------
# Parts 1 and 2 on another device than the CPU (the meta device: shapes, no values)
# ---------------------------------------------------------------------------------------

DROPPING_BERT = {**BERT, "attn_drop_rate": 0.1, "layer_drop_rate": 0.1}


def device_inputs(g):
    B, T = 3, 7
    return {"text": torch.randint(1, BERT["vocab_size"], (B, T), generator=g),
            "mask": key_mask(g, B, T), "seed": torch.randint(0, 2**31 - 1, (1,), generator=g)}


def device_call(m, x, device):
    """Attention, the multi-head layer, the block and BertModel (training mode, dropout on,
    a key mask) and mask_inputs with a CPU generator on the meta device, then
    pretraining_step up to its `.item()` (meta tensors hold no values). mask_inputs must
    still draw on the CPU generator: its state afterwards is compared. Not here: parts 3 and
    4 (they run `transformers`' pretrained BertModel; graded on the CPU)."""
    V, generator = BERT["vocab_size"], torch.Generator().manual_seed(int(x["seed"]))

    def run():
        text, mask = elsewhere(x["text"]), elsewhere(x["mask"])
        stream = torch.zeros(*text.shape, BERT["embed_dim"], dtype=F64, device=ELSEWHERE)
        q = stream.view(*text.shape, BERT["n_heads"], -1).transpose(1, 2)  # (B, h, T, d)
        block = m.TransformerBlock(**{**BLOCK, "attn_drop_rate": 0.1, "layer_drop_rate": 0.1})
        model = m.BertModel(**DROPPING_BERT).to(ELSEWHERE, F64).train()
        masked, labels = m.mask_inputs(text, V, V, generator=generator)
        return {"attention": m.scaled_dot_product(q, q, q, 0.1, mask)[0],
                "mha": m.MultiHeadAttention(**MHA).to(ELSEWHERE, F64).train()(stream, mask),
                "block": block.to(ELSEWHERE, F64).train()((stream, mask))[0],
                "bert": model(text, mask), "masked_text": masked, "labels": labels}

    def step():
        model = m.BertModel(**DROPPING_BERT).to(ELSEWHERE, F64).train()
        m.pretraining_step(model, PlainSGD(model.parameters(), lr=0.1), elsewhere(x["text"]),
                           V, V, generator=torch.Generator().manual_seed(0))
    return {**device_checked(run, step), "generator_after": after_draws(generator)}


add(Case("device/meta", 2, device_inputs, device_call, tol=TOL,
         hint="make new tensors on the inputs' device (device=x.device) and move given ones "
              "there; mask_inputs draws on the generator's device and moves the draws to "
              "text's device"))


# ---------------------------------------------------------------------------------------
# Training: fine-tune on the frozen pretrained MiniLM, tell comedies from tragedies
# ---------------------------------------------------------------------------------------

PROFILES = {
    # 2000 balanced speeches of 6 comedies and 6 tragedies (6-40 words, at most 32
    # WordPiece tokens), the frozen MiniLM (its dropout active in training mode, as the
    # source's BERT was), a 1-layer bidirectional GRU of 64, 2 epochs of Adam 1e-3; 1000
    # held-out speeches. Measured with the reference: public split 0.685, 0.702, 0.682,
    # 0.693 (training seeds 0-3), autograder split 0.693, 0.684, 0.682 (seeds 0-2): 0.682 at
    # worst. An untrained head gets about 0.5 (the majority class of a balanced set: 0.5).
    # Bigger heads (2 layers of 128, the source's shape scaled down) or a third epoch gave
    # 0.64-0.70 with a larger spread between epochs. The threshold 0.62 sits 6 points below
    # the worst measured run and 12 above chance. Time: 63-109 s of training and 10-22 s of
    # evaluation in-process with the machine shared (load 3-6); 95-141 s for the whole case
    # through the sandbox (MiniLM loads in about 4 s).
    "cpu": dict(threads=1, seed=0, n_train=2000, n_test=1000, max_length=32, epochs=2,
                batch_size=32, lr=1e-3, model=dict(hidden_dim=64, output_dim=1, n_layers=1,
                                                   bidirectional=True, dropout=0.3),
                min_accuracy=0.62),
    # The source's recipe on IMDB (17,500 training reviews of the 25,000; 512 tokens; its
    # head; Adam 3e-5 in the source, 1e-3 here for a 6-layer BERT in 3 epochs), graded on
    # the 25,000 test reviews at the source's 90% target. Not measured here (no IMDB, no GPU).
    "gpu": dict(threads=0, seed=0, n_train=17_500, max_length=512, epochs=3, batch_size=32,
                lr=1e-3, model=dict(hidden_dim=256, output_dim=1, n_layers=3,
                                    bidirectional=True, dropout=0.3),
                min_accuracy=0.90),
}


def profile_name(device) -> str:
    """The gpu profile needs CUDA and the IMDB folder (data/aclImdb); else the cpu one."""
    return ("gpu" if torch.device(device).type == "cuda" and bert_data.imdb_available()
            else "cpu")


def genre_inputs(g):
    """The child gets the training speeches' ids and labels only."""
    p = PROFILES["cpu"]
    texts, labels = bert_data.genre_sample("train", p["n_train"], g)
    seed = torch.randint(0, 2**31 - 1, (1,), generator=g)
    ids = bert_data.encode(bert_data.load_tokenizer(), texts, p["max_length"])
    return {"ids": ids.to(torch.int16), "labels": labels, "held_out_seed": seed}  # ids < 2^15


def genre_reference(x):
    """The held-out speeches (another split: never in the child's data) and their labels."""
    p = PROFILES["cpu"]
    g = torch.Generator().manual_seed(int(x["held_out_seed"]))
    texts, labels = bert_data.genre_sample("test", p["n_test"], g)
    ids = bert_data.encode(bert_data.load_tokenizer(), texts, p["max_length"])
    return {"data": {"ids": ids.to(torch.int16)}, "labels": labels.long()}


def imdb_reference():
    """The gpu profile's held-out labels (IMDB's test reviews), read by the trusted parent."""
    if not bert_data.imdb_available():
        return None
    return bert_data.load_imdb(split="test")[1].long()


def report(step, total, loss):
    try:
        from grader.sandbox import report_progress
    except ImportError:  # pragma: no cover - the helper is part of the grader
        return
    report_progress(step, total, loss)


def training_data(name: str, x, g):
    """(ids, labels) the child trains on: the case's speeches, or IMDB's training split."""
    if name == "cpu":
        return x["ids"].cpu().long(), x["labels"].cpu().float()
    p = PROFILES[name]
    texts, labels = bert_data.load_imdb(split="train")
    keep = torch.randperm(len(texts), generator=g)[: p["n_train"]]
    ids = bert_data.encode(bert_data.load_tokenizer(), [texts[int(i)] for i in keep],
                           p["max_length"])
    return ids, labels[keep]


def finetune_call(m, x, device):
    name = profile_name(device)
    p = PROFILES[name]
    with torch_threads(p["threads"]):
        torch.manual_seed(p["seed"])
        g = torch.Generator().manual_seed(p["seed"])
        ids, labels = training_data(name, x, g)
        bert, _ = bert_data.load_minilm("sdpa")
        model = m.BERTGRUSentiment(bert, **p["model"])
        m.freeze_bert(model)
        model = model.to(device)
        optimizer = torch.optim.Adam([q for q in model.parameters() if q.requires_grad],
                                     lr=p["lr"])
        criterion = nn.BCEWithLogitsLoss()
        for epoch in range(p["epochs"]):
            batches = [(t.to(device), y.to(device)) for t, y in
                       bert_data.batches(ids, labels, p["batch_size"], generator=g)]
            loss, _ = m.train(model, batches, optimizer, criterion)
            report(epoch + 1, p["epochs"], loss)
        return head_weights(model)


def evaluate_call(ref, weights, data, device):
    """Runs with the REFERENCE module only: predicted labels (N,) of the held-out speeches."""
    name = profile_name(device)
    p = PROFILES[name]
    with torch_threads(p["threads"]):
        bert, tokenizer = bert_data.load_minilm("sdpa")
        model = ref.BERTGRUSentiment(bert, **p["model"])
        want = head_weights(model)
        if not isinstance(weights, dict) or set(weights) != set(want):
            got = sorted(weights) if isinstance(weights, dict) else type(weights).__name__
            raise ValueError(f"training must return the head's weights (every key of "
                             f"state_dict() but bert.*): expected {sorted(want)[:4]}..., "
                             f"got {str(got)[:200]}")
        for key, value in want.items():
            if weights[key].shape != value.shape:
                raise ValueError(f"the trained weight {key} has shape {tuple(weights[key].shape)}"
                                 f", the head needs {tuple(value.shape)}")
        model.load_state_dict({k: v.float() for k, v in weights.items()}, strict=False)
        model = model.to(device).eval()
        if name == "gpu":
            texts, _ = bert_data.load_imdb(split="test")
            ids = bert_data.encode(tokenizer, texts, p["max_length"])
        else:
            ids = data["ids"].cpu().long()
        labels = torch.zeros(len(ids))
        order = bert_data.length_order(ids)
        predictions = []
        with torch.no_grad():
            for text, _ in bert_data.batches(ids, labels, 64):
                predictions.append((model(text.to(device)).squeeze(1) > 0).long().cpu())
        out = torch.empty(len(ids), dtype=torch.long)
        out[order] = torch.cat(predictions)
        return out


suite.add(Case(
    "train/genre_beats_chance", 10, genre_inputs, finetune_call, reference=genre_reference,
    evaluate=evaluate_call, min_accuracy=PROFILES["cpu"]["min_accuracy"],
    gpu_reference=imdb_reference, gpu_min_accuracy=PROFILES["gpu"]["min_accuracy"],
    # Judged by work: 2 epochs of 63 batches on one thread. The reference's child used 27 s
    # of CPU (MiniLM's load included; 147 s of wall time at a load of 8-10 on this 2-core
    # machine) and the parent's evaluation 5 s. 120 s of CPU is about 4.4x the child's; 600 s
    # of wall time is a backstop (20x the idle time), not a budget.
    time_limit=600.0, cpu_time=120.0,
    hint="fine-tunes your BERTGRUSentiment (with your train) on the frozen pretrained MiniLM; "
         "the grader classifies held-out speeches with the trained head"))
