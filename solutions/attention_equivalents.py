"""Known-correct alternatives in `attention`: the reference written the ways students write it.

EQUIVALENTS = {name: (how it differs, [(text in the solution, replacement)])}, the format of
attention_mutants.py; each text must occur exactly once in solutions/attention.py. Every
equivalent must score 100% on both fixture sets and pass the audit on fresh seeds.
"""
PE_BODY = """        position = torch.arange(max_seq_len, dtype=torch.float64)[:, None]  # (L, 1)
        even = torch.arange(0, d_model, 2, dtype=torch.float64)                # (d/2,)
        angle = position / 10000 ** (even / d_model)                           # (L, d/2)
        pe = torch.zeros(max_seq_len, d_model)
        pe[:, 0::2] = torch.sin(angle)
        pe[:, 1::2] = torch.cos(angle)
"""
SCORES = "scores = torch.bmm(q, k.transpose(-2, -1)) / math.sqrt(q.shape[-1])  # (N, L_q, L_k)"
ATTENTION_BODY = """    scores = torch.bmm(q, k.transpose(-2, -1)) / math.sqrt(q.shape[-1])  # (N, L_q, L_k)
    att_values = torch.softmax(scores, dim=-1)
    return torch.bmm(att_values, v), att_values
"""
CAUSAL_MASK = """    L = q.shape[1]
    future = torch.ones(L, L, dtype=torch.bool, device=q.device).triu(1)  # True where j > i
    att_values = torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1)
"""

EQUIVALENTS = {
    "pe_two_loops": (
        "the table filled entry by entry with two Python loops and math.sin / math.cos",
        [(PE_BODY, """        pe = torch.zeros(max_seq_len, d_model)
        for pos in range(max_seq_len):
            for i in range(0, d_model, 2):
                pe[pos, i] = math.sin(pos / (10000 ** (i / d_model)))
                pe[pos, i + 1] = math.cos(pos / (10000 ** (i / d_model)))
""")]),
    "pe_exp_log_float32": (
        "the frequencies as exp(-log(10000) * 2i / d_model), all in float32 (as the "
        "Annotated Transformer writes it)",
        [(PE_BODY, """        pe = torch.zeros(max_seq_len, d_model)
        position = torch.arange(0, max_seq_len).unsqueeze(1).float()
        div_term = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(10000.0) / d_model))
        pe[:, 0::2] = torch.sin(position * div_term)
        pe[:, 1::2] = torch.cos(position * div_term)
""")]),
    "pe_stack_interleave": (
        "sin and cos stacked on a new last axis and flattened into alternating columns, "
        "with torch.outer and torch.pow in float32",
        [(PE_BODY, """        inv_freq = 1.0 / torch.pow(10000.0, torch.arange(0, d_model, 2).float() / d_model)
        angle = torch.outer(torch.arange(max_seq_len).float(), inv_freq)  # (L, d/2)
        pe = torch.stack([angle.sin(), angle.cos()], dim=-1).reshape(max_seq_len, d_model)
""")]),
    "attention_float32_scale": (
        "the scale as a float32 tensor, torch.sqrt(torch.tensor(d_k, dtype=torch.float32)): "
        "a float32 constant in a float64 computation",
        [(SCORES, "scores = torch.bmm(q, k.transpose(-2, -1)) / torch.sqrt("
                  "torch.tensor(q.shape[-1], dtype=torch.float32))")]),
    "causal_float32_scale_tensor": (
        "the causal scores scaled by a float32 tensor made with torch.tensor's default dtype",
        [("""    scores = torch.bmm(q, k.transpose(-2, -1)) / math.sqrt(q.shape[-1])  # (N, L, L)
    L = q.shape[1]""", """    scores = torch.bmm(q, k.transpose(-2, -1)) * torch.tensor(q.shape[-1]).float().rsqrt()
    L = q.shape[1]""")]),
    "attention_matmul_scale_q_first": (
        "q scaled by 1/sqrt(d_k) before torch.matmul with k.transpose(1, 2)",
        [(SCORES, "scores = torch.matmul(q / math.sqrt(q.size(-1)), k.transpose(1, 2))")]),
    "attention_einsum_rsqrt": (
        "torch.einsum for both products, and the scale as torch.rsqrt",
        [(ATTENTION_BODY, """    d_k = torch.tensor(float(q.shape[-1]), dtype=q.dtype, device=q.device)
    scores = torch.einsum("nqd,nkd->nqk", q, k) * torch.rsqrt(d_k)
    att_values = scores.softmax(dim=2)
    return torch.einsum("nqk,nkd->nqd", att_values, v), att_values
""")]),
    "attention_manual_softmax": (
        "the softmax written out: exp(scores - max) over its sum along the keys, and the "
        "@ operator",
        [(ATTENTION_BODY, """    scores = q @ k.mT / q.shape[-1] ** 0.5
    e = torch.exp(scores - scores.max(dim=-1, keepdim=True).values)
    att_values = e / e.sum(dim=-1, keepdim=True)
    return att_values @ v, att_values
""")]),
    "mha_concat_in_loop": (
        "the head outputs concatenated one by one in a loop, on dim=2",
        [("""        outputs = [head(x) for head in self.attn_modules]  # each (N, L, output_dim of head)
        return self.linear_out(torch.cat(outputs, dim=-1))
""", """        out = None
        for head in self.attn_modules:
            out = head(x) if out is None else torch.cat((out, head(x)), dim=2)
        return self.linear_out(out)
""")]),
    "causal_tril_where": (
        "a lower-triangular matrix of ones, and masked_fill where it is 0",
        [(CAUSAL_MASK, """    keep = torch.tril(torch.ones(q.shape[1], k.shape[1], device=q.device))
    att_values = F.softmax(scores.masked_fill(keep == 0, float("-inf")), dim=-1)
""")]),
    "causal_additive_mask": (
        "an additive mask: -inf above the diagonal, 0 elsewhere, added to the scores",
        [(CAUSAL_MASK, """    L = q.shape[1]
    mask = torch.full((L, L), float("-inf"), dtype=q.dtype, device=q.device).triu(diagonal=1)
    att_values = torch.softmax(scores + mask, dim=-1)
""")]),
}
