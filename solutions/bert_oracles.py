"""Expected values of the `bert` cases that do not come from the reference: the attention
and the multi-head layer from their formulas (written independently of the reference), the
block from `torch.nn.TransformerEncoderLayer` with copied weights (GELU, post-LN, key padding
mask), and the attention maps from `transformers`' own (`output_attentions=True`).

Instructor side only: used by the fixture generator and the audit, never shipped to
students and never importable inside the sandbox.
"""
import math

import torch
from torch import nn

from grader.suites.bert import BLOCK, F64, MHA, tiny_bert


def attention_formula(q, k, v, mask=None):
    """(values, weights) of softmax(q k^T / sqrt(d)) v with hidden key columns."""
    scores = torch.einsum("bhtd,bhsd->bhts", q, k) * q.shape[-1] ** -0.5
    if mask is not None:
        scores = scores + torch.where(mask.bool(), -math.inf, 0.0)[:, None, None, :]
    weights = scores.softmax(dim=-1)
    return torch.einsum("bhts,bhsd->bhtd", weights, v), weights


def mha_formula(state: dict, x, n_heads: int, mask=None):
    """The fused-qkv layer: row block [3d h, 3d (h + 1)) of qkv_proj is head h's q, k, v."""
    B, T, E = x.shape
    d = E // n_heads
    qkv = (x @ state["qkv_proj.weight"].T + state["qkv_proj.bias"]).view(B, T, n_heads, 3, d)
    q, k, v = (qkv[:, :, :, i].transpose(1, 2) for i in range(3))       # (B, h, T, d)
    values, _ = attention_formula(q, k, v, mask)
    merged = values.transpose(1, 2).reshape(B, T, E)
    return merged @ state["o_proj.weight"].T + state["o_proj.bias"]


def torch_encoder_layer(state: dict, embed_dim: int, n_heads: int) -> nn.Module:
    """torch.nn.TransformerEncoderLayer (post-LN, GELU, FFN width E) with the block's
    weights; the fused projection's per-head [q k v] rows are regrouped into torch's
    [all q; all k; all v] layout."""
    layer = nn.TransformerEncoderLayer(embed_dim, n_heads, dim_feedforward=embed_dim,
                                       dropout=0.0, activation="gelu", batch_first=True,
                                       norm_first=False, dtype=F64)
    d = embed_dim // n_heads
    w = state["attention.qkv_proj.weight"].view(n_heads, 3, d, embed_dim)
    b = state["attention.qkv_proj.bias"].view(n_heads, 3, d)
    with torch.no_grad():
        layer.self_attn.in_proj_weight.copy_(w.transpose(0, 1).reshape(3 * embed_dim, embed_dim))
        layer.self_attn.in_proj_bias.copy_(b.transpose(0, 1).reshape(3 * embed_dim))
        layer.self_attn.out_proj.weight.copy_(state["attention.o_proj.weight"])
        layer.self_attn.out_proj.bias.copy_(state["attention.o_proj.bias"])
        for ours, theirs in (("ffn.0", "linear1"), ("ffn.2", "linear2"), ("norm1", "norm1"),
                             ("norm2", "norm2")):
            getattr(layer, theirs).weight.copy_(state[f"{ours}.weight"])
            getattr(layer, theirs).bias.copy_(state[f"{ours}.bias"])
    return layer.eval()


def attention_expected(x):
    demo = x["demo"]
    dv, dw = attention_formula(demo["q"], demo["k"], demo["v"], demo["mask"])
    mv, mw = attention_formula(x["q"], x["k"], x["v"], x["mask"])
    nv, nw = attention_formula(x["q"], x["k"], x["v"])
    return {"demo_values": dv, "demo_attention": dw, "values": mv, "attention": mw,
            "no_mask_values": nv, "no_mask_attention": nw,
            "bool_mask_values": mv}


def mha_expected(x):
    s, h = x["state"], MHA["n_heads"]
    return {"masked": mha_formula(s, x["x"], h, x["mask"]), "no_mask": mha_formula(s, x["x"], h),
            "batch_of_one": mha_formula(s, x["one"], h),
            "eval_without_dropout": mha_formula(s, x["x"], h, x["mask"]),
            "train_rate_1": s["o_proj.bias"].expand_as(x["x"]).clone(),
            "source_shape": torch.tensor([3, 2, 16])}


def block_expected(x):
    layer = torch_encoder_layer(x["state"], BLOCK["embed_dim"], BLOCK["n_heads"])
    with torch.no_grad():
        masked = layer(x["x"], src_key_padding_mask=x["mask"].bool())
        plain = layer(x["x"])
    return {"masked": masked, "no_mask": plain, "mask_passed_on": x["mask"],
            "chained": layer(layer(x["x"]))}


def maps_expected(x):
    bert = tiny_bert(x["bert"], "cpu")
    with torch.no_grad():
        masked = bert(x["ids"], token_type_ids=x["types"], attention_mask=x["attention_mask"],
                      output_attentions=True).attentions
        plain = bert(x["ids"], output_attentions=True).attentions
    return {"padded_pairs": torch.stack(masked), "defaults": torch.stack(plain)}


ORACLES = {
    "attention/scaled_dot_product": attention_expected,
    "mha/forward": mha_expected,
    "block/vs_torch_encoder_layer": block_expected,
    "inside/bert_attention": maps_expected,
}
