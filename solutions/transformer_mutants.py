"""Known mistakes in `transformer`, each a small edit of the reference solution.

MUTANTS = {name: (what the student probably did, [(text in the solution, replacement)])}.
Each text must occur exactly once in solutions/transformer.py. Fixtures store the outputs
of every mistake so the grader can name it; tests grade each one and expect lost points.
"""
LAYER_BODY = """        x = self.self_attn_ln(x + self.self_attn_drop(
            self.self_attn(x, x, x, padding_mask, causal=self.is_decoder)))
        if self.is_decoder:
            x = self.cross_attn_ln(x + self.cross_attn_drop(
                self.cross_attn(x, encoder_out, encoder_out, encoder_padding_mask)))
        return self.ffn_ln(x + self.ffn_drop(self.ffn(x)))"""  # the reference's TransformerLayer.forward

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
        [(LAYER_BODY,
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
    "squeeze_breaks_batch_of_one": (
        "a bare .squeeze() on the key-padding mask: with a batch of one it also drops the batch "
        "dimension, and the mask then lands on the queries instead of the keys",
        [("key_padding_mask.bool()[:, None, :]", "key_padding_mask.bool().squeeze().unsqueeze(1)")]),
    "scale_by_sequence_length": (
        "scores were divided by sqrt(sequence length) instead of sqrt(d_head) (q.shape[1] is "
        "the length, q.shape[-1] the head size)",
        [("scale = 1.0 / math.sqrt(q.shape[-1])", "scale = 1.0 / math.sqrt(q.shape[1])")]),
    "mask_repeated_in_head_order": (
        "the padding mask was repeated per head with .repeat (head-major order) instead of "
        ".repeat_interleave: rows must follow the (batch, head) order of the split heads",
        [("key_padding_mask.repeat_interleave(self.n_heads, dim=0)",
          "key_padding_mask.repeat(self.n_heads, 1)")]),
    "heads_hardcoded_4": (
        "the number of heads is hard-coded to 4 where the heads are split: use self.n_heads",
        [("x.view(B, length, self.n_heads, self.d_head).transpose(1, 2)",
          "x.view(B, length, 4, -1).transpose(1, 2)")]),
    "eps_outside_sqrt": (
        "layer norm added eps after the square root (sqrt(var) + eps) instead of inside it "
        "(sqrt(var + eps)): rows with a small variance come out wrong",
        [("torch.sqrt(var + self.eps)", "(torch.sqrt(var) + self.eps)")]),
    "frequency_per_column": (
        "every column got its own frequency 1/10000^(j/d_model); each sin/cos pair (2i, 2i+1) "
        "must share the frequency 1/10000^(2i/d_model)",
        [("pe[:, 1::2] = torch.cos(angles[:, : d_model // 2])",
          "pe[:, 1::2] = torch.cos(positions / torch.pow(10000.0, (even[: d_model // 2] + 1) "
          "/ d_model))")]),
    "no_pad_after_eos": (
        "greedy_decode keeps generating after a row produced EOS: later tokens must be PAD",
        [("next_id = logits[:, -1].argmax(-1).masked_fill(finished, model.pad_id)",
          "next_id = logits[:, -1].argmax(-1)")]),
    "labels_padded_with_pad": (
        "summary labels were padded with pad_id instead of -100: the padding then counts in "
        "the loss and the model learns to predict PAD",
        [("row + [IGNORE_INDEX] * (T - len(row))", "row + [pad_id] * (T - len(row))")]),
    "decoder_inputs_not_shifted": (
        "decoder_input_ids are the labels themselves, not shifted right: the decoder sees the "
        "token it must predict (teacher forcing needs [eos_id, labels[:, :-1]])",
        [("""    decoder_input_ids = torch.full_like(labels, eos_id)
    decoder_input_ids[:, 1:] = labels[:, :-1]
""", """    decoder_input_ids = labels.clone()
""")]),
    "decoder_starts_with_pad": (
        "decoder_input_ids start with pad_id (T5's convention) instead of this model's start "
        "token, eos_id",
        [("decoder_input_ids = torch.full_like(labels, eos_id)",
          "decoder_input_ids = torch.full_like(labels, pad_id)")]),
    "summary_without_eos": (
        "summaries got no EOS at the end: the model never learns where a summary stops",
        [("targets = [list(t[:max_target_len - 1]) + [eos_id] for t in summaries]",
          "targets = [list(t[:max_target_len - 1]) for t in summaries]")]),
    "cut_without_room_for_eos": (
        "documents were cut at max_source_len before appending EOS: rows come out one token "
        "longer than max_source_len",
        [("sources = [list(d[:max_source_len - 1]) + [eos_id] for d in documents]",
          "sources = [list(d[:max_source_len]) + [eos_id] for d in documents]")]),
    "loss_averaged_over_padding": (
        "the masked loss divides by every position (B * T), padding included, instead of the "
        "number of real target tokens",
        [("    return F.cross_entropy(wide.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)",
          "    return F.cross_entropy(wide.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX,"
          "\n                           reduction=\"sum\") / labels.numel()")]),
    "loss_mean_of_row_means": (
        "the masked loss is a mean of per-row means: a short summary's tokens weigh more than "
        "a long one's; every real token must count once",
        [("    return F.cross_entropy(wide.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)",
          "    return torch.stack([F.cross_entropy(w, t, ignore_index=IGNORE_INDEX)"
          "\n                        for w, t in zip(wide, labels)]).mean()")]),
    "stops_when_first_row_ends": (
        "greedy_summarize stops as soon as one row has produced EOS: it must wait for every row",
        [("if bool(done.all()):", "if bool(done.any()):")]),
    "never_stops_early": (
        "greedy_summarize always runs max_new_tokens steps: it must stop once every row has "
        "produced EOS",
        [("""        if bool(done.all()):
            break
""", "")]),
    "keeps_generating_after_eos": (
        "greedy_summarize keeps generating in rows that have produced EOS: what follows EOS "
        "must be PAD",
        [("""        token = token.masked_fill(done, model.pad_id)
""", "")]),
    "torch_fused_attention": (
        "uses torch.nn.functional.scaled_dot_product_attention, which this part asks you to write",
        [("    weights = torch.softmax(scores, dim=-1).to(v.dtype)\n"
          "    return torch.bmm(weights, v)\n",
          "    allowed = scores > float(\"-inf\")  # the masks, as the fused kernel takes them\n"
          "    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)\n")]),
    "dropout_after_layer_norm": (
        "dropout applied after the LayerNorm, LN(x + sublayer(x)) then dropout: it belongs on "
        "the sublayer's output, before the residual add (LN(x + dropout(sublayer(x))))",
        [(LAYER_BODY,
          """        x = self.self_attn_drop(self.self_attn_ln(
            x + self.self_attn(x, x, x, padding_mask, causal=self.is_decoder)))
        if self.is_decoder:
            x = self.cross_attn_drop(self.cross_attn_ln(
                x + self.cross_attn(x, encoder_out, encoder_out, encoder_padding_mask)))
        return self.ffn_drop(self.ffn_ln(x + self.ffn(x)))""")]),
    "padding_mask_not_moved": (
        "made a tensor on the CPU while its inputs are on another device",
        [("        key_padding_mask = key_padding_mask.to(q.device)  # a mask built on the CPU too\n",
          "")]),
    "causal_mask_on_cpu": (
        "made a tensor on the CPU while its inputs are on another device",
        [("dtype=torch.bool, device=q.device).triu(1)", "dtype=torch.bool).triu(1)")]),
    "loss_divided_by_batch": (
        "the model's loss divides the summed cross-entropy by the batch size: it is the mean "
        "over the positions whose label is not -100 (their number, not B)",
        [("loss = F.cross_entropy(logits.flatten(0, 1).to(wide), labels.flatten(), ignore_index=-100)",
          "loss = F.cross_entropy(logits.flatten(0, 1).to(wide), labels.flatten(), "
          "ignore_index=-100,\n                               reduction=\"sum\") / labels.shape[0]")]),
    "masked_loss_divided_by_batch": (
        "the masked loss divides the summed cross-entropy by the batch size instead of the "
        "number of real target tokens",
        [("    return F.cross_entropy(wide.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)",
          "    return F.cross_entropy(wide.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX,"
          "\n                           reduction=\"sum\") / labels.shape[0]")]),
    "masked_loss_without_graph": (
        "the masked loss is rebuilt from a Python number (.item()): it is cut from the graph, so "
        "no gradient reaches the logits and the model cannot train",
        [("    return F.cross_entropy(wide.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)",
          "    return torch.tensor(F.cross_entropy(wide.flatten(0, 1), labels.flatten(), "
          "ignore_index=IGNORE_INDEX).item(),\n                        dtype=wide.dtype)")]),
    "greedy_decode_in_training_mode": (
        "greedy_decode leaves the model in training mode (dropout on while decoding): it calls "
        "model.eval() first",
        [("    model.eval()\n    encoder_out, encoder_padding_mask = model.encode(input_ids)",
          "    encoder_out, encoder_padding_mask = model.encode(input_ids)")]),
    "greedy_summarize_in_training_mode": (
        "greedy_summarize leaves the model in training mode (dropout on while decoding): it "
        "calls model.eval() first",
        [("    model.eval()\n    memory, memory_mask = model.encode(input_ids)",
          "    memory, memory_mask = model.encode(input_ids)")]),
    "on_step_counts_from_0": (
        "train_summarizer calls on_step with step 0 after the first step: the step it reports "
        "is the number of steps done, 1 .. steps",
        [("on_step(step + 1, steps, losses[-1])", "on_step(step, steps, losses[-1])")]),
    "summarizer_left_in_training_mode": (
        "train_summarizer leaves the model in training mode: it ends with model.eval()",
        [("    model.eval()\n    return losses", "    return losses")]),
    "summarizer_without_clipping": (
        "train_summarizer does not clip the gradients to norm 1",
        [("        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)\n", "")]),
    "lm_head_not_tied": (
        "lm_head has its own weight: it must be emb_word's (tied), one matrix for the input "
        "and the output",
        [("        self.lm_head.weight = self.emb_word.weight  # tied: one matrix for input and output\n",
          "")]),
}
