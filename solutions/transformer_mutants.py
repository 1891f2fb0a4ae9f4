"""Known mistakes in `transformer`, each a small edit of the reference solution.

MUTANTS = {name: (what the student probably did, [(text in the solution, replacement)])}.
Each text must occur exactly once in solutions/transformer.py. Fixtures store the outputs
of every mistake so the grader can name it; tests grade each one and expect lost points.
"""
MUTANTS = {
    "no_scale": (
        "attention scores were not divided by sqrt(d_head)",
        [("torch.bmm(q * scale, k.transpose(1, 2))", "torch.bmm(q, k.transpose(1, 2))")]),
    "inverted_padding_mask": (
        "the key-padding mask is inverted: 1 means pad (ignore), 0 means a real token",
        [("key_padding_mask.bool()[:, None, :]", "~key_padding_mask.bool()[:, None, :]")]),
    "softmax_wrong_axis": (
        "softmax taken over the queries (dim=1) instead of the keys (dim=-1)",
        [("weights = torch.softmax(scores, dim=-1).to(v.dtype)",
          "weights = torch.softmax(scores, dim=1).to(v.dtype)")]),
    "decoder_not_causal": (
        "the decoder's self-attention is not causal: it can see future tokens",
        [("self.self_attn(x, x, x, padding_mask, causal=self.is_decoder)",
          "self.self_attn(x, x, x, padding_mask, causal=False)")]),
    "causal_mask_includes_diagonal": (
        "the causal mask also hides the diagonal: position i cannot see itself",
        [("dtype=torch.bool, device=q.device).triu(1)", "dtype=torch.bool, device=q.device).triu(0)")]),
    "pre_layer_norm": (
        "pre-LN (x + sublayer(LN(x))) was built instead of the post-LN layer (LN(x + sublayer(x)))",
        [("""        x = self.self_attn_ln(x + self.self_attn_drop(
            self.self_attn(x, x, x, padding_mask, causal=self.is_decoder)))
        if self.is_decoder:
            x = self.cross_attn_ln(x + self.cross_attn_drop(
                self.cross_attn(x, encoder_out, encoder_out, encoder_padding_mask)))
        return self.ffn_ln(x + self.ffn_drop(self.ffn(x)))""",
          """        h = self.self_attn_ln(x)
        x = x + self.self_attn_drop(self.self_attn(h, h, h, padding_mask, causal=self.is_decoder))
        if self.is_decoder:
            h = self.cross_attn_ln(x)
            x = x + self.cross_attn_drop(
                self.cross_attn(h, encoder_out, encoder_out, encoder_padding_mask))
        return x + self.ffn_drop(self.ffn(self.ffn_ln(x)))""")]),
    "unbiased_variance": (
        "layer norm used the unbiased variance (divides by n - 1) instead of the population one",
        [("x.var(dim=-1, unbiased=False, keepdim=True)\n", "x.var(dim=-1, unbiased=True, keepdim=True)\n")]),
    "heads_interleaved": (
        "heads take interleaved channels: head h must own channels h*d_head .. (h+1)*d_head",
        [("x.view(B, length, self.n_heads, self.d_head).transpose(1, 2)",
          "x.view(B, length, self.d_head, self.n_heads).permute(0, 3, 1, 2)")]),
    "no_eos_start": (
        "the decoder input starts with PAD instead of EOS",
        [("shifted = labels.new_full(labels.shape, self.eos_id)",
          "shifted = labels.new_full(labels.shape, self.pad_id)")]),
}
