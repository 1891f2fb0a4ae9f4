"""Known-correct alternatives in `gpt`: the reference written the way other students write it.

EQUIVALENTS = {name: (what is different, [(text in the solution, replacement)])}, the format
of gpt_mutants.py. Each must score 100% on both fixture sets and pass every audit seed.
"""
EQUIVALENTS = {
    "scale_queries_first": (
        "queries scaled by n_hidden ** -0.5 before the matmul",
        [("scores = q @ k.transpose(-2, -1) / math.sqrt(self.n_hidden)",
          "scores = (q * self.n_hidden ** -0.5) @ k.transpose(-2, -1)")]),
    "head_float32_scale": (
        "the scale as a float32 tensor, torch.sqrt(torch.tensor(n_hidden, dtype=torch.float32)): "
        "a float32 constant in a float64 computation",
        [("scores = q @ k.transpose(-2, -1) / math.sqrt(self.n_hidden)",
          "scores = q @ k.transpose(-2, -1) / torch.sqrt(torch.tensor(self.n_hidden, "
          "dtype=torch.float32))")]),
    "top_k_by_kthvalue": (
        "the k-th largest logit as the (V - k + 1)-th smallest, with kthvalue",
        [("kth = torch.topk(logits, k, dim=-1).values[..., -1:]",
          "kth = logits.kthvalue(logits.shape[-1] - k + 1, dim=-1, keepdim=True).values")]),
    "top_p_float32_probabilities": (
        "the nucleus's probabilities computed in float32 (a float32 intermediate)",
        [("    probs = torch.softmax(sorted_logits, dim=-1)\n    mass_before",
          "    probs = torch.softmax(sorted_logits.float(), dim=-1)\n    mass_before")]),
    "einsum_scores": (
        "scores and outputs with torch.einsum",
        [("scores = q @ k.transpose(-2, -1) / math.sqrt(self.n_hidden)",
          'scores = torch.einsum("btd,bsd->bts", q, k) / math.sqrt(self.n_hidden)'),
         ("return alpha @ v, alpha", 'return torch.einsum("bts,bsd->btd", alpha, v), alpha')]),
    "additive_mask": (
        "a large negative number added to blocked scores instead of masked_fill(-inf)",
        [('scores = scores.masked_fill(blocked, float("-inf"))',
          "scores = scores + blocked.to(scores.dtype) * -1e9")]),
    "where_mask_manual_softmax": (
        "torch.where on the mask, then softmax written out with the row maximum subtracted",
        [("""            blocked = attn_mask.to(scores.device) == 0
            scores = scores.masked_fill(blocked, float("-inf"))
        alpha = torch.softmax(scores, dim=-1)""",
          """            allowed = attn_mask.to(scores.device).bool()
            scores = torch.where(allowed, scores, torch.full_like(scores, float("-inf")))
        e = (scores - scores.amax(dim=-1, keepdim=True)).exp()
        alpha = e / e.sum(dim=-1, keepdim=True)""")]),
    "heads_stacked_then_flattened": (
        "head outputs stacked on a new dim and flattened instead of concatenated",
        [("return self.project(torch.cat(outs, dim=-1)), torch.stack(alphas, dim=1)",
          "return self.project(torch.stack(outs, dim=2).flatten(2)), torch.stack(alphas, dim=1)")]),
    "broadcast_positions_and_comparison_mask": (
        "positions broadcast from (1, T); the causal mask built by comparing position indices",
        [("positions = torch.arange(past, past + T, device=input_ids.device).expand(B, -1)",
          "positions = torch.arange(T, device=input_ids.device)[None, :] + past"),
         ("""causal_attn_mask = torch.tril(torch.ones(T, past + T, device=input_ids.device),
                                      diagonal=past).expand(B, -1, -1)""",
          """query_pos = torch.arange(past, past + T, device=input_ids.device)
        key_pos = torch.arange(past + T, device=input_ids.device)
        causal_attn_mask = (key_pos[None, :] <= query_pos[:, None]).unsqueeze(0).repeat(B, 1, 1)""")]),
    "loss_log_softmax_gather": (
        "the loss from log_softmax and gather instead of CrossEntropyLoss",
        [("loss = self.criterion(logits[:, :-1].reshape(-1, V), input_ids[:, 1:].reshape(-1))",
          "loss = -torch.log_softmax(logits[:, :-1], dim=-1).gather("
          "-1, input_ids[:, 1:, None])[..., 0].reshape(-1)")]),
    "loss_ignore_index": (
        "padding targets set to -100 and F.cross_entropy's mean over the others",
        [("""        mask = inp_mask[:, 1:].reshape(-1).to(loss.dtype)
        return (loss * mask).sum() / mask.sum()""",
          """        targets = input_ids[:, 1:].masked_fill(inp_mask[:, 1:] == 0, -100)
        return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, V),
                                                 targets.reshape(-1), ignore_index=-100)""")]),
    "top_k_by_sort": (
        "the k-th largest logit read from a descending sort",
        [("kth = torch.topk(logits, k, dim=-1).values[..., -1:]",
          "kth = torch.sort(logits, dim=-1, descending=True).values[..., k - 1:k]")]),
    "top_p_ascending": (
        "nucleus filtering the Hugging Face way: ascending sort, drop while the cumulative "
        "mass is <= 1 - p",
        [("""    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs
    drop_sorted = mass_before >= p""",
          """    sorted_logits, order = torch.sort(logits, dim=-1)
    drop_sorted = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1) <= 1 - p""")]),
    "prefill_one_token_at_a_time": (
        "with the cache, the prompt is fed one token at a time before generating",
        [("""            fresh = ids if cache is None or step == 0 else ids[:, -1:]
            logits, _ = self(fresh, kv_cache=cache)""",
          """            if cache is None:
                logits, _ = self(ids)
            elif step == 0:
                for t in range(ids.shape[1]):
                    logits, _ = self(ids[:, t:t + 1], kv_cache=cache)
            else:
                logits, _ = self(ids[:, -1:], kv_cache=cache)""")]),
}
