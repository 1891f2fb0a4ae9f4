"""Correct code written another way, as students write it: each must score 100%.

EQUIVALENTS = {name: (how it differs, [(text in the solution, replacement)])}, the format of
captioning_mutants.py; each text must occur exactly once in solutions/captioning.py. The
tests grade every one on both fixture sets and `python -m grader audit captioning` on fresh
seeds: a case that fails one of them judges the rounding, not the mathematics.
"""
EQUIVALENTS = {
    "rnn_tanh_via_sigmoid": (
        "tanh written as 2 * sigmoid(2a) - 1 in rnn_step_forward",
        [("next_h = torch.tanh(x @ Wx + prev_h @ Wh + b)",
          "next_h = 2 * torch.sigmoid(2 * (x @ Wx + prev_h @ Wh + b)) - 1")]),
    "rnn_backward_sums_at_the_end": (
        "rnn_backward fills a preallocated dx and sums the weight gradients of all steps "
        "at the end (torch.stack(...).sum(0)) instead of accumulating them in the loop",
        [("""    dxs = [None] * T
    dprev = torch.zeros_like(dh[:, 0])
    dWx = dWh = db = 0
    for t in reversed(range(T)):
        dx_t, dprev, dWx_t, dWh_t, db_t = rnn_step_backward(dh[:, t] + dprev, cache[t])
        dxs[t] = dx_t
        dWx, dWh, db = dWx + dWx_t, dWh + dWh_t, db + db_t
    dx = torch.stack(dxs, dim=1)  # (N, T, D)
""", """    dx = dh.new_zeros(N, T, cache[0][0].shape[1])
    dprev = dh.new_zeros(N, H)
    parts = []
    for t in range(T - 1, -1, -1):
        dx[:, t], dprev, *weights = rnn_step_backward(dh[:, t] + dprev, cache[t])
        parts.append(weights)
    dWx, dWh, db = (torch.stack(p).sum(dim=0) for p in zip(*parts))
""")]),
    "embedding_one_hot_matmul": (
        "word lookup as a one-hot matrix times the table",
        [("out = self.W_embed[x]",
          "out = F.one_hot(x, self.W_embed.shape[0]).to(self.W_embed.dtype) @ self.W_embed")]),
    "loss_manual_log_softmax": (
        "the loss by hand: log-softmax with logsumexp, gather the right words, mask, sum / N",
        [("""    loss = F.cross_entropy(x.reshape(-1, x.shape[-1]), y.reshape(-1),
                           ignore_index=-100 if ignore_index is None else ignore_index,
                           reduction="sum") / x.shape[0]""",
          """    N, T, V = x.shape
    log_probs = x - torch.logsumexp(x, dim=2, keepdim=True)              # (N, T, V)
    picked = log_probs.gather(2, y[:, :, None])[:, :, 0]                  # (N, T)
    keep = torch.ones_like(picked) if ignore_index is None else (y != ignore_index).to(x.dtype)
    loss = -(picked * keep).sum() / N""")]),
    "lstm_four_matmuls": (
        "LSTM step with one pair of matmuls per gate, slicing the weights' columns by H",
        [("""        a = x @ self.Wx + prev_h @ self.Wh + self.b                      # (N, 4H)
        i, f, o, g = a.chunk(4, dim=1)""",
          """        H = prev_h.shape[1]
        i, f, o, g = (x @ self.Wx[:, k * H:(k + 1) * H] + prev_h @ self.Wh[:, k * H:(k + 1) * H]
                      + self.b[k * H:(k + 1) * H] for k in range(4))""")]),
    "attention_float32_scale": (
        "the scale as a float32 tensor, torch.sqrt(torch.tensor(H, dtype=torch.float32)): a "
        "float32 constant in a float64 computation",
        [("[:, 0] / math.sqrt(H)  # (N, 16)",
          "[:, 0] / torch.sqrt(torch.tensor(H, dtype=torch.float32))  # (N, 16)")]),
    "attention_scale_from_int_tensor": (
        "the scores multiplied by torch.tensor(H) ** -0.5: a float32 tensor made from an "
        "integer one",
        [("[:, 0] / math.sqrt(H)  # (N, 16)", "[:, 0] * torch.tensor(H) ** -0.5  # (N, 16)")]),
    "attention_einsum_scaled_query": (
        "attention with einsum, the query divided by sqrt(H) before the product, and the "
        "softmax written out (exp of the scores minus their max, over their sum)",
        [("""    scores = torch.bmm(prev_h[:, None, :], A_flat)[:, 0] / math.sqrt(H)  # (N, 16)
    weights = torch.softmax(scores, dim=1)
    attn = torch.bmm(A_flat, weights[:, :, None])[:, :, 0]               # (N, H)""",
          """    scores = torch.einsum("nh,nhk->nk", prev_h / math.sqrt(H), A_flat)
    e = torch.exp(scores - scores.max(dim=1, keepdim=True).values)
    weights = e / e.sum(dim=1, keepdim=True)
    attn = torch.einsum("nhk,nk->nh", A_flat, weights)""")]),
    "model_einsum_projection": (
        "CaptioningRNN.forward projects the grid with einsum and averages it with "
        "flatten(2).mean(-1)",
        [("""        if self.cell_type == "attn":
            A = self.feature_proj(features.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # (N, H, 4, 4)
            hidden = self.rnn(words, A)                                  # (N, T, H)
        else:
            h0 = self.feature_proj(features.mean(dim=(2, 3)))            # (N, H)""",
          """        W, bias = self.feature_proj.weight, self.feature_proj.bias
        if self.cell_type == "attn":
            A = torch.einsum("nchw,dc->ndhw", features, W) + bias[:, None, None]
            hidden = self.rnn(words, A)                                  # (N, T, H)
        else:
            h0 = features.flatten(2).mean(dim=-1) @ W.T + bias            # (N, H)""")]),
    "sample_done_flags": (
        "sample writes <NULL> inside the loop once a caption is done (a bool per caption) "
        "and collects the attention weights in a list that it stacks at the end",
        [("""            attn_weights_all = A.new_zeros(N, max_length, *A.shape[2:])""",
          """            attn_weights_all = []"""),
         ("""                attn_weights_all[:, t] = weights""",
          """                attn_weights_all.append(weights)"""),
         ("""        word = torch.full((N,), self._start, dtype=torch.long, device=images.device)
""", """        word = torch.full((N,), self._start, dtype=torch.long, device=images.device)
        done = torch.zeros(N, dtype=torch.bool, device=images.device)
"""),
         ("""            word = self.output(h).argmax(dim=1)
            captions[:, t] = word
        is_end = (captions == self._end).long()
        after_end = is_end.cumsum(dim=1) - is_end > 0  # strictly after the first <END>
        captions = captions.masked_fill(after_end, self._null)
        if self.cell_type == "attn":
            return captions, attn_weights_all""",
          """            word = self.output(h).argmax(dim=1)
            captions[:, t] = torch.where(done, torch.full_like(word, self._null), word)
            done = done | (word == self._end)
        if self.cell_type == "attn":
            return captions, torch.stack(attn_weights_all, dim=1)""")]),
}
