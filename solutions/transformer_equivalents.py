"""Correct code written another way, as students write it: each must score 100%.

EQUIVALENTS = {name: (how it differs, [(text in the solution, replacement)])}, the format of
transformer_mutants.py: each text occurs exactly once in solutions/transformer.py. The tests
grade every one on both fixture sets, and `python -m grader audit transformer` on fresh seeds.
"""
MHA_BODY = """        qh = split_heads(self.q_proj(q), T)
        kh = split_heads(self.k_proj(k), S)
        vh = split_heads(self.v_proj(v), S)
        if key_padding_mask is not None:  # one copy of each row per head, (b, h) order
            key_padding_mask = key_padding_mask.repeat_interleave(self.n_heads, dim=0)
        out = scaled_dot_product_attention(qh, kh, vh, key_padding_mask, causal)  # (B*H, T, d)
        out = out.view(B, self.n_heads, T, self.d_head).transpose(1, 2).reshape(B, T, C)
        return self.o_proj(out)
"""

GREEDY_BODY = """    for _ in range(max_new_tokens):
        logits = model.decode(generated, encoder_out, encoder_padding_mask)  # (B, t, V)
        next_id = logits[:, -1].argmax(-1).masked_fill(finished, model.pad_id)
        finished |= next_id.eq(model.eos_id)
        generated = torch.cat([generated, next_id[:, None]], dim=1)
    return generated[:, 1:]
"""

EQUIVALENTS = {
    "scale_after_matmul": (
        "bmm(q, k^T) / sqrt(d), the formula as written, instead of scaling q first",
        [("torch.bmm(q * scale, k.transpose(1, 2))",
          "torch.bmm(q, k.transpose(1, 2)) / math.sqrt(q.shape[-1])")]),
    "softmax_always_float32": (
        "the softmax always in float32 (.float()), float64 scores included, then cast back",
        [("scores = scores.to(torch.promote_types(scores.dtype, torch.float32))",
          "scores = scores.float()")]),
    "einsum_and_manual_softmax": (
        "einsum for both products, softmax by hand (exp of shifted scores over their sum)",
        [("""    scores = torch.bmm(query, key.transpose(1, 2)) / math.sqrt(query.shape[-1])  # (N, K, S)
    weights = torch.softmax(scores, dim=-1)
    return torch.bmm(weights, value), weights
""", """    scores = torch.einsum("nkm,nsm->nks", query, key) * query.shape[-1] ** -0.5
    e = torch.exp(scores - scores.amax(dim=-1, keepdim=True))
    weights = e / e.sum(dim=-1, keepdim=True)
    return torch.einsum("nks,nsd->nkd", weights, value), weights
""")]),
    "loops_other_order": (
        "the loops run over keys outside and queries inside, with matmul on 1-d slices and "
        "rsqrt for the scale",
        [("""    for i in range(K):
        for j in range(key.shape[0]):
            scores[i, j] = torch.dot(query[i], key[j]) / math.sqrt(M)
    return torch.softmax(scores, dim=-1) @ value
""", """    for j in range(key.shape[0]):
        for i in range(K):
            scores[i, j] = (query[i] @ key[j]) * torch.rsqrt(torch.tensor(float(M), dtype=query.dtype))
    return torch.matmul(torch.softmax(scores, dim=1), value)
"""), ("""    for i in range(K):
        for j in range(key.shape[1]):
            scores[:, i, j] = (query[:, i] * key[:, j]).sum(-1) / math.sqrt(M)
    return torch.bmm(torch.softmax(scores, dim=-1), value)
""", """    for j in range(key.shape[1]):
        for i in range(K):
            scores[:, i, j] = torch.einsum("nm,nm->n", query[:, i] / math.sqrt(M), key[:, j])
    return torch.stack([torch.softmax(s, dim=-1) @ v for s, v in zip(scores, value)])
""")]),
    "heads_as_4d_tensors": (
        "multi-head attention on (B, H, T, d_head) tensors with matmul and a broadcast mask, "
        "without calling scaled_dot_product_attention",
        [(MHA_BODY, """        qh = self.q_proj(q).view(B, T, self.n_heads, self.d_head).transpose(1, 2)
        kh = self.k_proj(k).view(B, S, self.n_heads, self.d_head).transpose(1, 2)
        vh = self.v_proj(v).view(B, S, self.n_heads, self.d_head).transpose(1, 2)
        scores = qh @ kh.transpose(-2, -1) / math.sqrt(self.d_head)  # (B, H, T, S)
        if key_padding_mask is not None:
            scores = scores.masked_fill(key_padding_mask.bool()[:, None, None, :], float("-inf"))
        if causal:
            scores = scores.masked_fill(
                torch.ones(T, S, dtype=torch.bool, device=q.device).triu(1), float("-inf"))
        out = torch.softmax(scores.to(torch.promote_types(scores.dtype, torch.float32)),
                            dim=-1).to(vh.dtype) @ vh  # (B, H, T, d_head)
        return self.o_proj(out.transpose(1, 2).contiguous().view(B, T, C))
""")]),
    "layernorm_by_hand_rsqrt": (
        "variance by hand as E[x^2] - E[x]^2, and rsqrt instead of / sqrt",
        [("""        var = x.var(dim=-1, unbiased=False, keepdim=True)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias
""", """        var = (x * x).mean(dim=-1, keepdim=True) - mean * mean
        return self.weight * ((x - mean) * torch.rsqrt(var + self.eps)) + self.bias
""")]),
    "layernorm_centered_variance": (
        "variance by hand from the centred values, ((x - mean)^2).mean",
        [("""        var = x.var(dim=-1, unbiased=False, keepdim=True)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias
""", """        centred = x - mean
        var = centred.pow(2).mean(dim=-1, keepdim=True)
        return torch.addcmul(self.bias, centred / (var + self.eps).sqrt(), self.weight)
""")]),
    "sinusoid_exp_log_float32": (
        "the frequencies as exp(-log(10000) * 2i / d) in float32, the tutorials' formula",
        [("""    positions = torch.arange(num_positions, dtype=torch.float64)[:, None]          # (P, 1)
    even = torch.arange(0, d_model, 2, dtype=torch.float64)                         # (ceil(d/2),)
    angles = positions / torch.pow(10000.0, even / d_model)                         # (P, ceil(d/2))
    pe = torch.zeros(num_positions, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angles)
    pe[:, 1::2] = torch.cos(angles[:, : d_model // 2])
    return pe.float()
""", """    position = torch.arange(num_positions).unsqueeze(1).float()
    div_term = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(10000.0) / d_model))
    pe = torch.zeros(num_positions, d_model)
    pe[:, 0::2] = torch.sin(position * div_term)
    pe[:, 1::2] = torch.cos(position * div_term)[:, : d_model // 2]
    return pe
""")]),
    "cumsum_positions": (
        "positions as a cumulative sum of ones along each row, minus one",
        [("return torch.arange(L, dtype=input_ids.dtype, device=input_ids.device).expand(B, L).clone()",
          "return (torch.ones_like(input_ids).cumsum(dim=1) - 1).to(input_ids.dtype)")]),
    "shift_right_cat_and_manual_loss": (
        "shift_right with torch.cat and torch.where; the loss as log_softmax, gather and a "
        "mean over the kept positions",
        [("""        shifted = labels.new_full(labels.shape, self.eos_id)
        shifted[:, 1:] = labels[:, :-1]
        return shifted.masked_fill(shifted.eq(-100), self.pad_id)
""", """        start = torch.full_like(labels[:, :1], self.eos_id)
        shifted = torch.cat([start, labels[:, :-1]], dim=1)
        return torch.where(shifted == -100, torch.full_like(shifted, self.pad_id), shifted)
"""), ("""        wide = torch.promote_types(logits.dtype, torch.float32)
        loss = F.cross_entropy(logits.flatten(0, 1).to(wide), labels.flatten(), ignore_index=-100)
""", """        log_probs = torch.log_softmax(logits.double(), dim=-1)  # (B, T, V)
        keep = labels.ne(-100)
        picked = log_probs.gather(-1, labels.clamp_min(0).unsqueeze(-1)).squeeze(-1)  # (B, T)
        loss = -(picked * keep).sum() / keep.sum()
""")]),
    "decoder_without_padding_mask": (
        "the decoder's self-attention gets no padding mask (causality alone hides the PAD "
        "tokens, which only follow the answer)",
        [("            x = layer(x, padding_mask, encoder_out, encoder_padding_mask)",
          "            x = layer(x, None, encoder_out, encoder_padding_mask)")]),
    "greedy_pad_at_the_end": (
        "greedy decoding feeds back every argmax, then replaces what follows the first EOS "
        "by PAD at the end",
        [(GREEDY_BODY, """    for _ in range(max_new_tokens):
        logits = model.decode(generated, encoder_out, encoder_padding_mask)
        generated = torch.cat([generated, logits[:, -1:].argmax(-1)], dim=1)
    new = generated[:, 1:]
    after_eos = new.eq(model.eos_id).long().cumsum(dim=1) - new.eq(model.eos_id).long() > 0
    return new.masked_fill(after_eos, model.pad_id)
""")]),
    "collate_pad_sequence": (
        "collate_summaries with torch.nn.utils.rnn.pad_sequence and the decoder inputs by "
        "torch.cat",
        [("""    sources = [list(d[:max_source_len - 1]) + [eos_id] for d in documents]
    targets = [list(t[:max_target_len - 1]) + [eos_id] for t in summaries]
    S, T = max(map(len, sources)), max(map(len, targets))
    input_ids = torch.tensor([row + [pad_id] * (S - len(row)) for row in sources])
    labels = torch.tensor([row + [IGNORE_INDEX] * (T - len(row)) for row in targets])
    decoder_input_ids = torch.full_like(labels, eos_id)
    decoder_input_ids[:, 1:] = labels[:, :-1]
    decoder_input_ids = decoder_input_ids.masked_fill(decoder_input_ids.eq(IGNORE_INDEX), pad_id)
""", """    from torch.nn.utils.rnn import pad_sequence
    eos = torch.tensor([eos_id])
    input_ids = pad_sequence([torch.cat([torch.tensor(d[:max_source_len - 1], dtype=torch.long),
                                         eos]) for d in documents],
                             batch_first=True, padding_value=pad_id)
    labels = pad_sequence([torch.cat([torch.tensor(t[:max_target_len - 1], dtype=torch.long),
                                      eos]) for t in summaries],
                          batch_first=True, padding_value=IGNORE_INDEX)
    shifted = torch.cat([torch.full((labels.shape[0], 1), eos_id), labels[:, :-1]], dim=1)
    decoder_input_ids = torch.where(shifted == IGNORE_INDEX, pad_id, shifted)
""")]),
    "loss_log_softmax_gather": (
        "the masked loss by hand: log_softmax, gather at the labels, a sum over the kept "
        "positions divided by their count",
        [("""    return F.cross_entropy(wide.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)
""", """    keep = labels != IGNORE_INDEX
    picked = torch.log_softmax(wide, dim=-1).gather(-1, labels.clamp(min=0)[..., None])[..., 0]
    return -(picked * keep).sum() / keep.sum()
""")]),
    "loss_boolean_index": (
        "the masked loss as a plain cross-entropy over the rows selected by a boolean mask",
        [("""    return F.cross_entropy(wide.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)
""", """    keep = labels.ne(IGNORE_INDEX)
    return F.cross_entropy(wide[keep], labels[keep])
""")]),
    "summarize_via_greedy_decode": (
        "greedy_summarize runs greedy_decode for every step, then drops the columns after the "
        "step where the last row produced EOS",
        [("""    memory, memory_mask = model.encode(input_ids)
    out = input_ids.new_full((input_ids.shape[0], 1), model.eos_id)  # (B, 1): the start
    done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
    for _ in range(max_new_tokens):
        token = model.decode(out, memory, memory_mask)[:, -1].argmax(-1)  # (B,)
        token = token.masked_fill(done, model.pad_id)
        done = done | token.eq(model.eos_id)
        out = torch.cat([out, token[:, None]], dim=1)
        if bool(done.all()):
            break
    return out[:, 1:]
""", """    generated = greedy_decode(model, input_ids, max_new_tokens)
    ended = generated == model.eos_id
    if not ended.any(dim=1).all():
        return generated
    return generated[:, :int(ended.int().argmax(dim=1).max()) + 1]
""")]),
    "summarize_while_loop": (
        "greedy_summarize as a while loop whose condition checks the step budget and the rows "
        "still running",
        [("""    for _ in range(max_new_tokens):
        token = model.decode(out, memory, memory_mask)[:, -1].argmax(-1)  # (B,)
        token = token.masked_fill(done, model.pad_id)
        done = done | token.eq(model.eos_id)
        out = torch.cat([out, token[:, None]], dim=1)
        if bool(done.all()):
            break
""", """    while out.shape[1] <= max_new_tokens and not done.all():
        token = torch.where(done, model.pad_id,
                            model.decode(out, memory, memory_mask)[:, -1].argmax(-1))
        done = done | (token == model.eos_id)
        out = torch.cat([out, token.unsqueeze(1)], dim=1)
""")]),
    "attention_float32_scale": (
        "the scale as a float32 tensor, 1 / torch.sqrt(torch.tensor(d_head, dtype=torch.float32)): "
        "a float32 constant in a float64 computation",
        [("scale = 1.0 / math.sqrt(q.shape[-1])",
          "scale = 1.0 / torch.sqrt(torch.tensor(q.shape[-1], dtype=torch.float32))")]),
    "no_loop_float32_scale": (
        "the no-loop scores divided by a float32 tensor, torch.tensor(M).float().sqrt()",
        [("scores = torch.bmm(query, key.transpose(1, 2)) / math.sqrt(query.shape[-1])",
          "scores = torch.bmm(query, key.transpose(1, 2)) / torch.tensor(query.shape[-1]).float().sqrt()")]),
    "loops_float32_scale": (
        "the loops' scores divided by a float32 constant tensor made once",
        [("""    for i in range(K):
        for j in range(key.shape[0]):
            scores[i, j] = torch.dot(query[i], key[j]) / math.sqrt(M)
""", """    root = torch.sqrt(torch.tensor(M, dtype=torch.float32))
    for i in range(K):
        for j in range(key.shape[0]):
            scores[i, j] = torch.dot(query[i], key[j]) / root
""")]),
    "functional_dropout": (
        "dropout through torch.nn.functional.dropout(x, p, self.training) with the modules' rate",
        [("return self.ffn_ln(x + self.ffn_drop(self.ffn(x)))",
          "return self.ffn_ln(x + F.dropout(self.ffn(x), self.ffn_drop.p, self.training))")]),
    "greedy_train_false": (
        "greedy decoding switches off training mode with model.train(False)",
        [("    model.eval()\n    encoder_out, encoder_padding_mask = model.encode(input_ids)",
          "    model.train(False)\n    encoder_out, encoder_padding_mask = model.encode(input_ids)")]),
    "on_step_enumerate_from_1": (
        "the training loop counts its steps with enumerate(..., start=1)",
        [("""    for step in range(steps):
        index = next(sampler).tolist()""", """    for done, _ in enumerate(range(steps), start=1):
        index = next(sampler).tolist()"""),
         ("on_step(step + 1, steps, losses[-1])", "on_step(done, steps, losses[-1])")]),
    "masked_loss_float32": (
        "the masked loss always computed in float32 (the docstring's minimum), float64 logits "
        "included",
        [("    wide = logits.to(torch.promote_types(logits.dtype, torch.float32))\n",
          "    wide = logits.float()\n")]),
}
