"""Known mistakes in `gpt`, each a small edit of the reference solution.

MUTANTS = {name: (what the student probably did, [(text in the solution, replacement)])}.
Each text must occur exactly once in solutions/gpt.py. Fixtures store the outputs of every
mistake so the grader can name it; tests grade each one and expect lost points.
"""
MUTANTS = {
    "mask_not_applied": (
        "the attention mask is never applied: every query sees every key",
        [('scores = scores.masked_fill(blocked, float("-inf"))', "scores = scores")]),
    "inverted_mask": (
        "the mask is read the wrong way round: here 1 means MAY attend and 0 blocks (the "
        "opposite of the transformer assignment's padding masks)",
        [("blocked = attn_mask.to(scores.device) == 0", "blocked = attn_mask.to(scores.device) == 1")]),
    "softmax_wrong_axis": (
        "softmax taken over the queries (dim=1) instead of the keys (dim=-1)",
        [("alpha = torch.softmax(scores, dim=-1)", "alpha = torch.softmax(scores, dim=1)")]),
    "no_scale": (
        "attention scores were not divided by sqrt(n_hidden)",
        [("scores = q @ k.transpose(-2, -1) / math.sqrt(self.n_hidden)",
          "scores = q @ k.transpose(-2, -1)")]),
    "positions_offset": (
        "positions start at 1 instead of 0 (pos_embed(1..T))",
        [("positions = torch.arange(past, past + T,", "positions = torch.arange(past + 1, past + T + 1,")]),
    "causal_mask_upper_triangle": (
        "the causal mask is built with torch.triu: position i sees the tokens after it, not "
        "before (use torch.tril)",
        [("causal_attn_mask = torch.tril(torch.ones(T, past + T,",
          "causal_attn_mask = torch.triu(torch.ones(T, past + T,")]),
    "cache_forgets_position_offset": (
        "with a KV cache the new tokens get positions 0..T-1 again instead of continuing from "
        "kv_cache.length",
        [("positions = torch.arange(past, past + T,", "positions = torch.arange(0, T,")]),
    "cache_mask_without_offset": (
        "with a KV cache the causal mask is torch.tril(ones(T, P + T)) without diagonal=P: the "
        "new tokens cannot see most cached positions",
        [("diagonal=past).expand(B, -1, -1)", "diagonal=0).expand(B, -1, -1)")]),
    "loss_counts_padding": (
        "the loss is averaged over every position, padding included (not weighted by the mask)",
        [("return (loss * mask).sum() / mask.sum()", "return loss.mean()")]),
    "loss_mask_not_shifted": (
        "the loss weights use inp_mask[:, :-1] instead of inp_mask[:, 1:] (the first pad counts "
        "as a target)",
        [("mask = inp_mask[:, 1:].reshape(-1)", "mask = inp_mask[:, :-1].reshape(-1)")]),
    "loss_not_shifted": (
        "the logits at t are compared with the token at t (no shift): the model learns to copy",
        [("self.criterion(logits[:, :-1].reshape(-1, V), input_ids[:, 1:].reshape(-1))",
          "self.criterion(logits[:, 1:].reshape(-1, V), input_ids[:, 1:].reshape(-1))")]),
    "unknown_as_pad": (
        "unknown words are encoded as <PAD> instead of <UNK>",
        [("self.tok_to_id.get(w, self.unk_id) for w in word_tokenize(s)]",
          "self.tok_to_id.get(w, self.pad_id) for w in word_tokenize(s)]")]),
    "decode_drops_start": (
        "decode leaves out the first id (the <START> token must be written out)",
        [('return " ".join(self.vocab[i] for i in toks.tolist())',
          'return " ".join(self.vocab[i] for i in toks.tolist()[1:])')]),
    "top_k_one_short": (
        "top-k drops the k-th largest logit too (<= instead of <): only k-1 tokens remain",
        [("logits.masked_fill(logits < kth,", "logits.masked_fill(logits <= kth,")]),
    "top_p_drops_crossing_token": (
        "top-p drops the token that carries the total across p (it must be kept: keep a token "
        "while the mass BEFORE it is < p)",
        [("mass_before = probs.cumsum(dim=-1) - probs", "mass_before = probs.cumsum(dim=-1)")]),
    "temperature_multiplied": (
        "the logits are multiplied by the temperature instead of divided by it",
        [("logits = logits / temperature", "logits = logits * temperature")]),
    "generate_squeeze": (
        "generate calls .squeeze() on the last logits, which breaks a batch of one",
        [("sample_next_token(logits[:, -1, :], temperature,",
          "sample_next_token(logits[:, -1, :].squeeze(), temperature,")]),
    "decode_drops_pad": (
        "decode leaves out the <PAD> tokens of a padded row (every id is written out, specials "
        "included)",
        [('return " ".join(self.vocab[i] for i in toks.tolist())',
          'return " ".join(self.vocab[i] for i in toks.tolist() if i != self.pad_id)')]),
    "top_k_breaks_ties": (
        "top-k keeps exactly k logits (the indices of torch.topk): a logit tied with the k-th "
        "largest must be kept too",
        [("""    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))""",
          """    chosen = torch.topk(logits, k, dim=-1).indices
    keep = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, chosen, True)
    return logits.masked_fill(~keep, float("-inf"))""")]),
    "top_k_in_place": (
        "changes its input in place",
        [('return logits.masked_fill(logits < kth, float("-inf"))',
          'return logits.masked_fill_(logits < kth, float("-inf"))')]),
    "generate_crops_long_prompt": (
        "generate cuts a prompt longer than max_N to its last max_N tokens: a prompt of max_N "
        "or more tokens is returned as it is",
        [("        ids = input_ids\n", "        ids = input_ids[:, -self.max_N:]\n")]),
    "loss_without_graph": (
        "the loss is rebuilt from a Python number (.item()): it is cut from the graph, so no "
        "gradient reaches the logits and the model cannot train",
        [("        return (loss * mask).sum() / mask.sum()\n",
          "        return torch.tensor(((loss * mask).sum() / mask.sum()).item(), "
          "dtype=logits.dtype)\n")]),
    "mask_not_moved": (
        "made a tensor on the CPU while its inputs are on another device",
        [("blocked = attn_mask.to(scores.device) == 0", "blocked = attn_mask == 0")]),
    "positions_on_cpu": (
        "made a tensor on the CPU while its inputs are on another device",
        [("positions = torch.arange(past, past + T, device=input_ids.device)",
          "positions = torch.arange(past, past + T)")]),
    "generate_not_clipped": (
        "generate does not stop at max_N tokens (pos_embed has only max_N rows)",
        [("steps = max(0, min(num_tokens, self.max_N - ids.shape[1]))", "steps = num_tokens")]),
}
