"""Expected values of the `transformer` cases that do not come from the reference: the
`torch.nn` layers the assignment promises to match (MultiheadAttention, LayerNorm,
TransformerEncoderLayer / DecoderLayer) with copied weights, greedy decoding rebuilt from
those layers, and the tokenizer the training case's inputs are built with.

Instructor side only: used by the fixture generator and the audit (and, through
`grader.authoring.oracle_module`, by input builders that run in the instructor's process),
never shipped to students and never importable inside the sandbox.
"""
import torch
import torch.nn.functional as F
from torch import nn

from grader.suites.transformer import (D_MODEL, EOS, F64, GREEDY_STOP, GREEDY_STOP_CALLS, MODEL,
                                       PAD, SOURCE_VOCAB, changed_future, eos_shifted,
                                       model_state, torch_layer)


def with_state(module: nn.Module, state: dict) -> nn.Module:
    module = module.to(F64)
    module.load_state_dict(state)
    return module.train()  # train mode keeps torch's layers off their eval fast path


def mha_expected_one(x):
    d, heads = x["d_model"], x["n_heads"]
    ref = with_state(nn.MultiheadAttention(d, heads, batch_first=True), x["state"])
    T, S = x["q"].shape[1], x["k"].shape[1]
    kwargs = {}
    if "mask" in x:
        kwargs = {"key_padding_mask": x["mask"],
                  "attn_mask": torch.ones(T, S, dtype=torch.bool).triu(1)}
    with torch.no_grad():
        return ref(x["q"], x["k"], x["v"], need_weights=False, **kwargs)[0]


def mha_expected(x):
    return ({k: mha_expected_one(v) for k, v in x.items()} if "state" not in x
            else mha_expected_one(x))


def layer_norm_expected(x):
    return {"random": F.layer_norm(x["x"], (16,), x["weight"], x["bias"], eps=1e-5),
            "low_variance": F.layer_norm(x["low_variance"], (16,), x["weight"], x["bias"],
                                         eps=1e-5),
            "source": F.layer_norm(x["source"], (4,), eps=1e-10)}


def encoder_expected(x):
    out = {}
    with torch.no_grad():
        for key, one in x.items():
            out[key] = with_state(torch_layer(False, *one["sizes"]), one["state"])(
                one["x"], src_key_padding_mask=one["mask"].bool())
    return out


def decoder_expected(x):
    layer = with_state(torch_layer(True), x["state"])
    T = x["x"].shape[1]
    with torch.no_grad():
        def run(inp):
            return layer(inp, x["memory"], tgt_mask=torch.ones(T, T, dtype=torch.bool).triu(1),
                         tgt_key_padding_mask=x["mask"], memory_key_padding_mask=x["memory_mask"])
        return {"out": run(x["x"]), "changed": run(changed_future(x)), "cut": x["cut"]}


def reference_tokens(text: str) -> list[int]:
    """The tokenizer the training case's problems are encoded with (a graded part of the
    assignment, so it lives here, not in the suite)."""
    ids = []
    for word in text.split():
        ids.extend([SOURCE_VOCAB.index(word)] if word in SOURCE_VOCAB[10:]
                   else [SOURCE_VOCAB.index(digit) for digit in word])
    return ids


def torch_state_of(state: dict, prefix: str, decoder: bool) -> dict:
    """The inverse of `layer_state`: one layer's weights under torch.nn's names."""
    out = {}
    attentions = [("self_attn.", "self_attn.")] + ([("multihead_attn.", "cross_attn.")]
                                                    if decoder else [])
    for theirs, ours in attentions:
        out[theirs + "in_proj_weight"] = torch.cat(
            [state[f"{prefix}{ours}{n}_proj.weight"] for n in "qkv"])
        out[theirs + "in_proj_bias"] = torch.cat(
            [state[f"{prefix}{ours}{n}_proj.bias"] for n in "qkv"])
        out[theirs + "out_proj.weight"] = state[f"{prefix}{ours}o_proj.weight"]
        out[theirs + "out_proj.bias"] = state[f"{prefix}{ours}o_proj.bias"]
    norms = ["self_attn_ln", "cross_attn_ln", "ffn_ln"] if decoder else ["self_attn_ln", "ffn_ln"]
    for i, name in enumerate(norms, start=1):
        out[f"norm{i}.weight"] = state[f"{prefix}{name}.weight"]
        out[f"norm{i}.bias"] = state[f"{prefix}{name}.bias"]
    for i in (1, 2):
        out[f"linear{i}.weight"] = state[f"{prefix}ffn.fc{i}.weight"]
        out[f"linear{i}.bias"] = state[f"{prefix}ffn.fc{i}.bias"]
    return out


def torch_parts(state: dict):
    """The model of `state` rebuilt from torch.nn layers (float64), for expected values."""
    layers = {side: [with_state(torch_layer(side == "decoder_layers"),
                                torch_state_of(state, f"{side}.{i}.", side == "decoder_layers"))
                     for i in range(MODEL["n_layers"])]
              for side in ("encoder_layers", "decoder_layers")}
    return state, layers


def torch_greedy(state, layers, ids, max_new_tokens):
    """Greedy decoding with torch.nn layers that stops once every row produced EOS."""
    def embed(tokens):
        positions = torch.arange(tokens.shape[1])
        x = state["emb_word.weight"][tokens] + state["emb_pos.weight"][positions]
        return F.layer_norm(x, (D_MODEL,), state["emb_ln.weight"], state["emb_ln.bias"])
    memory, memory_mask = embed(ids), ids.eq(PAD)
    for layer in layers["encoder_layers"]:
        memory = layer(memory, src_key_padding_mask=memory_mask)
    out = ids.new_full((ids.shape[0], 1), EOS)
    done = torch.zeros(ids.shape[0], dtype=torch.bool)
    for _ in range(max_new_tokens):
        T = out.shape[1]
        x = embed(out)
        for layer in layers["decoder_layers"]:
            x = layer(x, memory, tgt_mask=torch.ones(T, T, dtype=torch.bool).triu(1),
                      tgt_key_padding_mask=out.eq(PAD), memory_key_padding_mask=memory_mask)
        token = (x[:, -1] @ state["emb_word.weight"].T + state["lm_head.bias"]).argmax(-1)
        token = token.masked_fill(done, PAD)
        done |= token.eq(EOS)
        out = torch.cat([out, token[:, None]], dim=1)
        if done.all():
            break
    return out[:, 1:]


def greedy_stop_expected(x):
    """Expected values from torch.nn layers (nothing of the reference solution); the model
    handed over in training mode decodes as in eval mode, and is left there."""
    expected = {key: torch_greedy(*torch_parts(eos_shifted(x["state"], shift)), x["ids"][rows],
                                  steps)
                for key, (shift, rows, steps) in GREEDY_STOP_CALLS.items()}
    expected["from_training_mode"] = torch_greedy(*torch_parts(x["state"]), x["ids"],
                                                  GREEDY_STOP["max_new_tokens"])
    expected["left_in_eval_mode"] = torch.tensor(True)
    return expected


def varied_endings_state(g, ids):
    """Random weights whose greedy rows all end within the step budget, at different steps
    (so stopping at the first finished row, or never stopping, shows). Redrawn until so."""
    p = GREEDY_STOP
    for _ in range(200):
        state = model_state(g, p["eos_bias"])
        for k in state:  # stronger cross-attention: where a row ends depends on its input
            if k.startswith("decoder_layers.") and ".cross_attn." in k and k.endswith("weight"):
                state[k] = state[k] * p["cross_scale"]
        ended = torch_greedy(*torch_parts(state), ids, p["max_new_tokens"]).eq(EOS)
        if ended.any(1).all() and len(set(ended.float().argmax(1).tolist())) >= 2:
            return state
    raise RuntimeError("no random model with varied endings in 200 draws")


ORACLES = {
    **{name: mha_expected for name in ("mha/self_attention", "mha/cross_lengths",
                                        "mha/padding_and_causal", "mha/other_sizes")},
    "layernorm/vs_torch": layer_norm_expected,
    "layer/encoder_vs_torch": encoder_expected,
    "layer/decoder_vs_torch": decoder_expected,
    "summarize/greedy_stops": greedy_stop_expected,
}
