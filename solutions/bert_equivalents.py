"""Correct implementations of `bert` written another way, as students write them.

EQUIVALENTS = {name: (how it differs, [(text in the solution, replacement)])}, the format of
bert_mutants.py. Each must score 100% on the public and the autograder sets, and
`python -m grader audit bert` shows how far inside the tolerances they stay.
"""
EQUIVALENTS = {
    "einsum_scale_queries_first": (
        "queries scaled by d ** -0.5 before the product; logits and values with einsum",
        [("logits = q @ k.transpose(-2, -1) / math.sqrt(d_k)",
          'logits = torch.einsum("bhtd,bhsd->bhts", q * d_k ** -0.5, k)'),
         ("values = attention @ v", 'values = torch.einsum("bhts,bhsd->bhtd", attention, v)')]),
    "float32_scale": (
        "the scale as a float32 tensor, torch.sqrt(torch.tensor(d, dtype=torch.float32)): a "
        "float32 constant in a float64 computation",
        [("logits = q @ k.transpose(-2, -1) / math.sqrt(d_k)",
          "logits = q @ k.transpose(-2, -1) / torch.sqrt(torch.tensor(d_k, dtype=torch.float32))")]),
    "additive_large_negative_mask": (
        "a large negative number added to hidden keys' logits instead of masked_fill(-inf)",
        [('logits = logits.masked_fill(hidden, float("-inf"))',
          "logits = logits + hidden.to(logits.dtype) * -1e9")]),
    "heads_by_view_and_slices": (
        "the fused projection viewed and transposed, q, k, v sliced by hand; heads merged "
        "with transpose + contiguous().view",
        [("        qkv = self.qkv_proj(x).reshape(B, T, self.n_heads, 3 * self.head_dim)\n"
          "        q, k, v = qkv.permute(0, 2, 1, 3).chunk(3, dim=-1)",
          "        qkv = self.qkv_proj(x).view(B, T, self.n_heads, 3 * self.head_dim).transpose(1, 2)\n"
          "        d = self.head_dim\n"
          "        q, k, v = qkv[..., :d], qkv[..., d:2 * d], qkv[..., 2 * d:]"),
         ("values = values.permute(0, 2, 1, 3).reshape(B, T, self.embed_dim)",
          "values = values.transpose(1, 2).contiguous().view(B, T, self.embed_dim)")]),
    "mask_inputs_by_indexing": (
        "mask_inputs writes into a clone with boolean indexing instead of torch.where",
        [("    masked_text = torch.where(select & (kind < 0.8), torch.full_like(text, mask_token), text)\n"
          "    masked_text = torch.where(select & (kind >= 0.8) & (kind < 0.9), random_tokens, masked_text)\n"
          "    labels = torch.where(select, text, torch.full_like(text, IGNORE_INDEX))\n",
          "    masked_text = text.clone()\n"
          "    masked_text[select & (kind < 0.8)] = mask_token\n"
          "    swap = select & (kind >= 0.8) & (kind < 0.9)\n"
          "    masked_text[swap] = random_tokens[swap]\n"
          "    labels = torch.full_like(text, IGNORE_INDEX)\n"
          "    labels[select] = text[select]\n")]),
    "hidden_by_direction_view": (
        "the GRU's final states viewed as (layers, directions, B, H) and the last layer's "
        "taken apart",
        [("        if self.rnn.bidirectional:\n"
          "            hidden = torch.cat((hidden[-2], hidden[-1]), dim=1)         # (B, 2H)\n"
          "        else:\n"
          "            hidden = hidden[-1]                                         # (B, H)\n",
          "        directions = 2 if self.rnn.bidirectional else 1\n"
          "        last = hidden.view(self.rnn.num_layers, directions, *hidden.shape[1:])[-1]\n"
          "        hidden = torch.cat(list(last), dim=1)\n")]),
    "attention_maps_with_linear": (
        "bert_attention with F.linear on the layer's weights and a manual stable softmax",
        [("            q = att.query(h).view(B, T, heads, E // heads).transpose(1, 2)  # (B, heads, T, d)\n"
          "            k = att.key(h).view(B, T, heads, E // heads).transpose(1, 2)\n",
          "            q = F.linear(h, att.query.weight, att.query.bias).unflatten(-1, (heads, -1))\n"
          "            k = F.linear(h, att.key.weight, att.key.bias).unflatten(-1, (heads, -1))\n"
          "            q, k = q.permute(0, 2, 1, 3), k.permute(0, 2, 1, 3)\n"),
         ("            maps.append(torch.softmax(scores, dim=-1))\n",
          "            e = (scores - scores.amax(dim=-1, keepdim=True)).exp()\n"
          "            maps.append(e / e.sum(dim=-1, keepdim=True))\n")]),
}
