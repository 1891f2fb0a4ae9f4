"""Known mistakes in `captioning`, each a small edit of the reference solution.

MUTANTS = {name: (what the student probably did, [(text in the solution, replacement)])}.
Each text must occur exactly once in solutions/captioning.py. Fixtures store the outputs
of every mistake so the grader can name it; tests grade each one and expect lost points.
"""
MUTANTS = {
    "rnn_backward_adds_into_dh": (
        "changes its input in place",
        [("""        dx_t, dprev, dWx_t, dWh_t, db_t = rnn_step_backward(dh[:, t] + dprev, cache[t])""",
          """        dh[:, t] += dprev
        dx_t, dprev, dWx_t, dWh_t, db_t = rnn_step_backward(dh[:, t], cache[t])""")]),
    "embedding_assumes_two_dims": (
        "WordEmbedding flattened the ids as if they were (N, T): ids of any shape give "
        "vectors of that shape plus D ((N,) gives (N, D))",
        [("out = self.W_embed[x]",
          "out = self.W_embed[x.reshape(-1)].reshape(x.shape[0], x.shape[-1], -1)")]),
    "loss_cut_from_graph": (
        "temporal_softmax_loss computed on x.detach(): the value is right but no gradient "
        "reaches the scores, so nothing trains; keep the loss a tensor of the graph",
        [("loss = F.cross_entropy(x.reshape(-1, x.shape[-1]), y.reshape(-1),",
          "loss = F.cross_entropy(x.detach().reshape(-1, x.shape[-1]), y.reshape(-1),")]),
    "forward_detaches_features": (
        "CaptioningRNN.forward detached the image features: the loss's gradient must reach "
        "every parameter, image_encoder's included (the whole model trains)",
        [("""        features = self.image_encoder(images)                            # (N, C, 4, 4)
        words = self.word_embedding(captions_in)""",
          """        features = self.image_encoder(images).detach()                   # (N, C, 4, 4)
        words = self.word_embedding(captions_in)""")]),
    "lstm_cell_zeros_on_cpu": (
        "made a tensor on the CPU while its inputs are on another device",
        [("h, c = h0, torch.zeros_like(h0)", "h, c = h0, torch.zeros(h0.shape)")]),
    "sample_captions_on_cpu": (
        "made a tensor on the CPU while its inputs are on another device",
        [("captions = torch.full((N, max_length), self._null, dtype=torch.long, "
          "device=images.device)",
          "captions = torch.full((N, max_length), self._null, dtype=torch.long)")]),
    "no_tanh_derivative": (
        "rnn_step_backward forgot the tanh derivative: multiply dnext_h by (1 - next_h**2)",
        [("da = dnext_h * (1 - next_h ** 2)", "da = dnext_h")]),
    "backward_drops_recurrent_gradient": (
        "rnn_backward used only dh[:, t] at each step and dropped the gradient coming back "
        "from step t+1",
        [("rnn_step_backward(dh[:, t] + dprev, cache[t])",
          "rnn_step_backward(dh[:, t], cache[t])")]),
    "loss_mean_over_tokens": (
        "the loss was averaged over tokens; it must be summed over time and averaged over "
        "the N captions",
        [("""                           reduction="sum") / x.shape[0]""",
          """                           reduction="mean")""")]),
    "lstm_gates_ifgo": (
        "LSTM gates taken in the order i, f, g, o; the assignment's order is i, f, o, g",
        [("""        a = x @ self.Wx + prev_h @ self.Wh + self.b                      # (N, 4H)
        i, f, o, g = a.chunk(4, dim=1)""",
          """        a = x @ self.Wx + prev_h @ self.Wh + self.b                      # (N, 4H)
        i, f, g, o = a.chunk(4, dim=1)""")]),
    "attention_scaled_by_grid": (
        "attention scores divided by sqrt(D_a), the side of the grid, instead of sqrt(H)",
        [("[:, 0] / math.sqrt(H)  # (N, 16)", "[:, 0] / math.sqrt(D_a)  # (N, 16)")]),
    "attention_lstm_zero_init": (
        "AttentionLSTM started from h0 = c0 = 0; both must be the spatial mean of A",
        [("h = c = A.mean(dim=(2, 3))                                       # (N, H)",
          "h = c = torch.zeros_like(A[:, :, 0, 0])")]),
    "sample_emits_start": (
        "sample wrote <START> as the first word of each caption; the output starts with the "
        "first sampled word",
        [("""            word = self.output(h).argmax(dim=1)
            captions[:, t] = word""",
          """            captions[:, t] = word
            word = self.output(h).argmax(dim=1)""")]),
    "sample_continues_after_end": (
        "sample kept writing words after <END>; every position after a caption's first <END> "
        "must be <NULL>",
        [("captions = captions.masked_fill(after_end, self._null)", "pass")]),
    "sample_lstm_resets_cell": (
        "LSTM sample restarted the cell state at every step; c must carry over from one "
        "step to the next (it starts at zero once, before the first word)",
        [("                h, c = self.rnn.step_forward(x, h, c)\n",
          "                h, c = self.rnn.step_forward(x, h, torch.zeros_like(h))\n")]),
    "sample_attn_resets_cell": (
        "attention LSTM sample restarted the cell state at every step; c must carry over "
        "from one step to the next (it starts at the mean of A once)",
        [("h, c = self.rnn.step_forward(x, h, c, attn)",
          "h, c = self.rnn.step_forward(x, h, A.mean(dim=(2, 3)), attn)")]),
    "forward_ignores_null_not_ignore_index": (
        "CaptioningRNN.forward ignored the <NULL> positions instead of passing "
        "self.ignore_index to the loss (which may be another index, or None: nothing ignored)",
        [("temporal_softmax_loss(scores, captions_out, self.ignore_index)",
          "temporal_softmax_loss(scores, captions_out, self._null)")]),
    "loss_none_ignores_null": (
        "temporal_softmax_loss with ignore_index=None ignored index 0; None means that "
        "every position counts",
        [("ignore_index=-100 if ignore_index is None else ignore_index",
          "ignore_index=0 if ignore_index is None else ignore_index")]),
    "forward_squeeze_drops_batch_of_one": (
        ".squeeze() on the scores dropped the batch dimension of a batch of one, so the loss "
        "was divided by T instead of N; squeeze only the dimension you mean "
        "(.squeeze(1)) or index it",
        [("scores = self.output(hidden)                                     # (N, T, V)",
          "scores = self.output(hidden).squeeze()                           # (N, T, V)")]),
}
