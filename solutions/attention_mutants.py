"""Known mistakes in `attention`, each a small edit of the reference solution.

MUTANTS = {name: (what the student probably did, [(text in the solution, replacement)])}.
Each text must occur exactly once in solutions/attention.py. Fixtures store the outputs of
every mistake so the grader can name it; tests grade each one and expect lost points.
"""
# The reference's attention body (the same text solutions/attention_equivalents.py replaces).
ATTENTION_BODY = """    scores = torch.bmm(q, k.transpose(-2, -1)) / math.sqrt(q.shape[-1])  # (N, L_q, L_k)
    att_values = torch.softmax(scores, dim=-1)
    return torch.bmm(att_values, v), att_values
"""

MUTANTS = {
    "pe_blog_formula": (
        "the position table uses the blog formula 10000**(2*i/d_model) with i the column "
        "index (the exponent is doubled, and the cosine column uses its own index): 2i in the "
        "paper is already the even column's index",
        [("        pe[:, 0::2] = torch.sin(angle)\n        pe[:, 1::2] = torch.cos(angle)\n",
          "        pe[:, 0::2] = torch.sin(position / 10000 ** (2 * even / d_model))\n"
          "        pe[:, 1::2] = torch.cos(position / 10000 ** (2 * (even + 1) / d_model))\n")]),
    "pe_cos_own_index": (
        "the cosine column 2i+1 uses its own index in the exponent: both columns of a pair "
        "must share the frequency 1/10000**(2i/d_model)",
        [("        pe[:, 1::2] = torch.cos(angle)\n",
          "        pe[:, 1::2] = torch.cos(position / 10000 ** ((even + 1) / d_model))\n")]),
    "pe_sin_cos_swapped": (
        "sine and cosine are swapped: even columns take the sine, odd columns the cosine",
        [("        pe[:, 0::2] = torch.sin(angle)\n        pe[:, 1::2] = torch.cos(angle)\n",
          "        pe[:, 0::2] = torch.cos(angle)\n        pe[:, 1::2] = torch.sin(angle)\n")]),
    "pe_positions_from_one": (
        "positions start at 1: the first row of the table is position 0 (sin 0 = 0, cos 0 = 1)",
        [("torch.arange(max_seq_len, dtype=torch.float64)[:, None]",
          "torch.arange(1, max_seq_len + 1, dtype=torch.float64)[:, None]")]),
    "pe_misplaced_parenthesis": (
        "a misplaced parenthesis: pos / 10000 ** 2i / d_model divides by d_model after the "
        "power; the whole 2i / d_model is the exponent",
        [("        angle = position / 10000 ** (even / d_model)",
          "        angle = position / 10000 ** even / d_model")]),
    "pe_buffer_float64": (
        "the position table is stored in float64: the buffer pe is float32 (torch's default "
        "dtype), whatever dtype the formula was computed in",
        [("        pe = torch.zeros(max_seq_len, d_model)\n        pe[:, 0::2]",
          "        pe = torch.zeros(max_seq_len, d_model, dtype=torch.float64)\n        pe[:, 0::2]")]),
    "scales_query_in_place": (
        "changes its input in place",
        [("    scores = torch.bmm(q, k.transpose(-2, -1)) / math.sqrt(q.shape[-1])  # (N, L_q, L_k)\n",
          "    q /= math.sqrt(q.shape[-1])\n    scores = torch.bmm(q, k.transpose(-2, -1))  # (N, L_q, L_k)\n")]),
    "causal_mask_on_cpu": (
        "made a tensor on the CPU while its inputs are on another device",
        [("device=q.device).triu(1)  # True where j > i", ").triu(1)  # True where j > i")]),
    "linear_k_created_first": (
        "SelfAttention creates linear_k before linear_q: the layers must be created in the "
        "order q, k, v",
        [("""        self.linear_q = nn.Linear(input_dim, key_dim)
        self.linear_k = nn.Linear(input_dim, key_dim)
        self.linear_v = nn.Linear(input_dim, output_dim)
""", """        self.linear_k = nn.Linear(input_dim, key_dim)
        self.linear_q = nn.Linear(input_dim, key_dim)
        self.linear_v = nn.Linear(input_dim, output_dim)
""")]),
    "no_scale": (
        "the scores were not divided by sqrt(d_k)",
        [("scores = torch.bmm(q, k.transpose(-2, -1)) / math.sqrt(q.shape[-1])  # (N, L_q, L_k)",
          "scores = torch.bmm(q, k.transpose(-2, -1))  # (N, L_q, L_k)")]),
    "scale_by_d_k": (
        "the scores were divided by d_k instead of sqrt(d_k)",
        [("scores = torch.bmm(q, k.transpose(-2, -1)) / math.sqrt(q.shape[-1])  # (N, L_q, L_k)",
          "scores = torch.bmm(q, k.transpose(-2, -1)) / q.shape[-1]  # (N, L_q, L_k)")]),
    "scale_by_value_dim": (
        "the scores were divided by sqrt(d_v), the size of the values, instead of sqrt(d_k)",
        [("scores = torch.bmm(q, k.transpose(-2, -1)) / math.sqrt(q.shape[-1])  # (N, L_q, L_k)",
          "scores = torch.bmm(q, k.transpose(-2, -1)) / math.sqrt(v.shape[-1])  # (N, L_q, L_k)")]),
    "softmax_query_axis": (
        "the softmax runs over the queries (dim=1) instead of the keys (dim=-1)",
        [("    att_values = torch.softmax(scores, dim=-1)\n",
          "    att_values = torch.softmax(scores, dim=1)\n")]),
    "weights_before_softmax": (
        "att_values returns the scores before the softmax instead of the attention weights",
        [("    att_values = torch.softmax(scores, dim=-1)\n    return torch.bmm(att_values, v), att_values\n",
          "    att_values = torch.softmax(scores, dim=-1)\n    return torch.bmm(att_values, v), scores\n")]),
    "linear_v_created_first": (
        "SelfAttention creates linear_v before linear_q and linear_k: the layers must be "
        "created in the order q, k, v",
        [("""        self.linear_q = nn.Linear(input_dim, key_dim)
        self.linear_k = nn.Linear(input_dim, key_dim)
        self.linear_v = nn.Linear(input_dim, output_dim)
""", """        self.linear_v = nn.Linear(input_dim, output_dim)
        self.linear_q = nn.Linear(input_dim, key_dim)
        self.linear_k = nn.Linear(input_dim, key_dim)
""")]),
    "cross_query_created_last": (
        "CrossAttention creates linear_q after linear_k and linear_v: the layers must be "
        "created in the order q, k, v",
        [("""        self.linear_q = nn.Linear(x_input_dim, key_dim)
        self.linear_k = nn.Linear(y_input_dim, key_dim)
        self.linear_v = nn.Linear(y_input_dim, output_dim)
""", """        self.linear_k = nn.Linear(y_input_dim, key_dim)
        self.linear_v = nn.Linear(y_input_dim, output_dim)
        self.linear_q = nn.Linear(x_input_dim, key_dim)
""")]),
    "keys_from_query_layer": (
        "SelfAttention computes the keys with linear_q instead of linear_k",
        [("        output, _ = attention(self.linear_q(x), self.linear_k(x), self.linear_v(x))\n",
          "        output, _ = attention(self.linear_q(x), self.linear_q(x), self.linear_v(x))\n")]),
    "heads_interleaved": (
        "the head outputs were stacked on a new last axis and flattened, which interleaves "
        "their features: concatenate them along the feature axis (head 0's features first)",
        [("return self.linear_out(torch.cat(outputs, dim=-1))",
          "return self.linear_out(torch.stack(outputs, dim=-1).flatten(-2))")]),
    "causal_mask_hides_diagonal": (
        "the causal mask also hides the diagonal: position i must see itself (j <= i)",
        [("device=q.device).triu(1)  # True where j > i", "device=q.device).triu(0)  # True where j > i")]),
    "causal_mask_transposed": (
        "the causal mask is transposed: it hides the past (j < i) and lets position i see "
        "the future",
        [("device=q.device).triu(1)  # True where j > i", "device=q.device).tril(-1)  # True where j > i")]),
    "causal_mask_zero": (
        "the future scores were set to 0 instead of -inf, so future keys still get weight",
        [('scores.masked_fill(future, float("-inf"))', "scores.masked_fill(future, 0.0)")]),
    "causal_module_unmasked": (
        "CausalSelfAttention calls attention instead of causal_attention: it sees the future",
        [("        output, _ = causal_attention(self.linear_q(x), self.linear_k(x), self.linear_v(x))\n",
          "        output, _ = attention(self.linear_q(x), self.linear_k(x), self.linear_v(x))\n")]),
    "attention_torch_sdpa": (
        "uses torch.nn.functional.scaled_dot_product_attention, which this part asks you to write",
        [(ATTENTION_BODY, """    att_values = F.softmax(q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5, dim=-1)
    return F.scaled_dot_product_attention(q, k, v), att_values
""")]),
    "causal_torch_sdpa": (
        "uses torch.nn.functional.scaled_dot_product_attention, which this part asks you to write",
        [("""    att_values = torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1)
    return torch.bmm(att_values, v), att_values
""", """    att_values = torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1)
    return F.scaled_dot_product_attention(q, k, v, is_causal=True), att_values
""")]),
}
