"""Known mistakes in `bert`, each a small edit of the reference solution.

MUTANTS = {name: (what the student probably did, [(text in the solution, replacement)])}.
Each text must occur exactly once in solutions/bert.py. Fixtures store the outputs of every
mistake so the grader can name it; tests grade each one and expect lost points. The first
nine are bugs of the source homework's own solution (seed 003).
"""
MUTANTS = {
    "no_output_projection": (
        "the multi-head layer never applies o_proj to the merged heads",
        [("out = self.o_proj(values)", "out = values")]),
    "mask_hides_query_rows": (
        "the mask is reshaped to (B, 1, T, 1), hiding query rows instead of key columns",
        [("hidden = mask.to(torch.bool)[:, None, None, :]",
          "hidden = mask.to(torch.bool)[:, None, :, None]")]),
    "attention_dropout_in_eval": (
        "attention dropout stays on in eval mode (F.dropout is always given the rate)",
        [("drop = self.attn_drop_rate if self.training else 0.0",
          "drop = self.attn_drop_rate")]),
    "no_backward": (
        "the pretraining step never calls loss.backward(), so optimizer.step() changes nothing",
        [("\n    loss.backward()\n    optimizer.step()\n", "\n    optimizer.step()\n")]),
    "library_bert_model": (
        "`from transformers import BertModel` replaces your BertModel class with the library's",
        [("class BERTGRUSentiment(nn.Module):",
          "from transformers import BertModel  # noqa: E402,F811\n\n\n"
          "class BERTGRUSentiment(nn.Module):")]),
    "split_by_position": (
        "the 80/10/10 split follows the order of the selected tokens instead of a random "
        "choice per token",
        [("    kind = torch.rand(text.shape, generator=generator, device=draw_on).to(text.device)\n",
          "    torch.rand(text.shape, generator=generator, device=draw_on)\n"
          "    rank = (select.flatten().cumsum(0) - 1).view(text.shape)\n"
          "    kind = rank / select.sum().clamp(min=1)\n")]),
    "random_tokens_from_batch": (
        "random replacements are drawn from the tokens of the batch instead of the whole "
        "vocabulary",
        [("    random_tokens = torch.randint(0, vocab_size, text.shape, generator=generator,\n"
          "                                  device=draw_on).to(text.device)\n",
          "    pool = text.unique()\n"
          "    random_tokens = pool[torch.randint(0, len(pool), text.shape, generator=generator,\n"
          "                                       device=draw_on).to(text.device)]\n")]),
    "only_mask_ignored": (
        "only_mask=True is ignored: random and unchanged replacements still happen",
        [("    if only_mask:\n        kind = torch.zeros_like(kind)\n", "")]),
    "only_mask_skips_draws": (
        "only_mask=True returns before the last two draws (the generator must end in the same "
        "state either way)",
        [("        select &= text != pad_id\n",
          "        select &= text != pad_id\n"
          "    if only_mask:\n"
          "        return (torch.where(select, torch.full_like(text, mask_token), text),\n"
          "                torch.where(select, text, torch.full_like(text, IGNORE_INDEX)))\n")]),
    "draws_on_text_device": (
        "mask_inputs draws on text's device, not the generator's (text on a GPU with a CPU "
        "generator gets other draws than a CPU run)",
        [('    draw_on = torch.device("cpu") if generator is None else generator.device\n',
          "    draw_on = text.device\n")]),
    "padding_from_masked_text": (
        "pretraining_step builds the padding mask from the masked text: a real token replaced "
        "by a random id equal to pad_id is hidden as padding",
        [("pad_mask = None if pad_id is None else text == pad_id",
          "pad_mask = None if pad_id is None else masked_text == pad_id")]),
    "ffn_dropout_twice": (
        "the block applies its `dropout` to the FFN's output as well: the FFN's dropout is "
        "applied twice",
        [("out = self.norm2(h + self.ffn(h))", "out = self.norm2(h + self.dropout(self.ffn(h)))")]),
    "dropout_after_layer_norm": (
        "the block's dropout is applied after norm1 instead of on the attention's output",
        [("h = self.norm1(x + self.dropout(self.attention(x, mask)))",
          "h = self.dropout(self.norm1(x + self.attention(x, mask)))")]),
    "block_dropout_at_attention_rate": (
        "the block's `dropout` uses attn_drop_rate instead of layer_drop_rate",
        [("self.dropout = nn.Dropout(layer_drop_rate)", "self.dropout = nn.Dropout(attn_drop_rate)")]),
    "no_attention_dropout_in_training": (
        "the multi-head layer never drops attention weights, in training mode too",
        [("drop = self.attn_drop_rate if self.training else 0.0", "drop = 0.0")]),
    "predict_returns_logit": (
        "predict_sentiment returns the logit, not its sigmoid (the probability)",
        [("prediction = torch.sigmoid(model(tensor))", "prediction = model(tensor)")]),
    "positions_dropout_at_attention_rate": (
        "BertModel's positional encoding drops out at attn_drop_rate instead of layer_drop_rate",
        [("self.pos_encoding = PositionalEncoding(embed_dim, layer_drop_rate)",
          "self.pos_encoding = PositionalEncoding(embed_dim, attn_drop_rate)")]),
    "classifier_without_dropout": (
        "BERTGRUSentiment never applies its dropout before `out`",
        [("logits = self.out(self.dropout(hidden))", "logits = self.out(hidden)")]),
    "loss_not_a_float": (
        "pretraining_step returns the loss tensor, not a Python float",
        [("    optimizer.step()\n    # END SOLUTION\n    return loss.item()",
          "    optimizer.step()\n    # END SOLUTION\n    return loss.detach()")]),
    "padding_labelled": (
        "padding tokens can be selected, so they get labels (and [MASK]) too",
        [("    if pad_id is not None:\n        select &= text != pad_id\n", "")]),
    "no_scale": (
        "the attention logits are not divided by sqrt(d)",
        [("logits = q @ k.transpose(-2, -1) / math.sqrt(d_k)", "logits = q @ k.transpose(-2, -1)")]),
    "qkv_split_before_heads": (
        "q, k, v are split from the fused projection before the heads (torch's [all q; all "
        "k; all v] layout), not head by head",
        [("        qkv = self.qkv_proj(x).reshape(B, T, self.n_heads, 3 * self.head_dim)\n"
          "        q, k, v = qkv.permute(0, 2, 1, 3).chunk(3, dim=-1)",
          "        q, k, v = (t.reshape(B, T, self.n_heads, self.head_dim).permute(0, 2, 1, 3)\n"
          "                   for t in self.qkv_proj(x).chunk(3, dim=-1))")]),
    "pre_layer_norm": (
        "the block normalises before each sublayer (pre-LN) instead of after the residual "
        "(post-LN)",
        [("        h = self.norm1(x + self.dropout(self.attention(x, mask)))\n"
          "        out = self.norm2(h + self.ffn(h))",
          "        h = x + self.dropout(self.attention(self.norm1(x), mask))\n"
          "        out = h + self.ffn(self.norm2(h))")]),
    "first_gru_layer_state": (
        "the bidirectional head concatenates the FIRST layer's final states (hidden[0], "
        "hidden[1]) instead of the last layer's",
        [("hidden = torch.cat((hidden[-2], hidden[-1]), dim=1)",
          "hidden = torch.cat((hidden[0], hidden[1]), dim=1)")]),
    "gradients_into_bert": (
        "BERT runs outside torch.no_grad(), so gradients flow into the frozen model",
        [("        with torch.no_grad():\n            embedded = self.bert(text)[0]",
          "        embedded = self.bert(text)[0]")]),
    "accuracy_is_a_count": (
        "binary_accuracy returns the number right (8) instead of the fraction (0.8)",
        [("acc = correct.sum() / len(correct)", "acc = correct.sum()")]),
    "evaluate_in_training_mode": (
        "evaluate does not switch to eval mode, so dropout stays on",
        [("    model.eval()\n    with torch.no_grad():\n        for text, label in iterator:",
          "    with torch.no_grad():\n        for text, label in iterator:")]),
    "attention_maps_ignore_padding": (
        "bert_attention lets every query attend to padding keys",
        [("            scores = scores.masked_fill(attention_mask[:, None, None, :] == 0, "
          "float(\"-inf\"))\n", "")]),
}
