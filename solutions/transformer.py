"""Attention from scratch to an encoder-decoder Transformer.

You build every piece of a Transformer that learns to add and subtract integers:

1. vocabulary and tokenization of expressions such as "BOS POSITIVE 04 add NEGATIVE 15 EOS";
2. scaled dot-product attention three ways (two loops, batched two loops, no loops),
   then with a key-padding mask and a causal flag;
3. multi-head attention with `q_proj/k_proj/v_proj/o_proj`;
4. layer norm, the feed-forward block, sinusoidal and learned positions;
5. post-LN encoder and decoder layers, the encoder-decoder model, greedy decoding;
6. part two: the same model trained to summarize real text (docstrings of numpy and torch
   offline, XSum in the source's setting): padded batches with -100 labels, the masked
   token loss, greedy decoding that stops at EOS, a teacher-forced training loop.

Conventions used everywhere in this file:
- Batch first: sequences are (B, T, C).
- `key_padding_mask` / `padding_mask` is 1 (True) at PAD positions, which must be ignored.
  bool, uint8 and int masks are all accepted.
- `causal=True` means query position i may look at key positions j <= i only.
- Every batch size works, 1 included: a bare `.squeeze()` drops the batch dimension too.
- Softmax (and the loss) run in at least float32: float16 and bfloat16 scores are upcast
  to float32 and the weights cast back to the dtype of `v`; float32 and float64 inputs keep
  their own precision. The graded cases use float64 inputs and weights (create new tensors
  with the dtype and device of your inputs), except `sinusoidal_positions` (float32 by
  contract), one float32 row each in `attention/vectorized` and `summarize/masked_loss`,
  and the training cases.

Run `make grade` to score this file; `notebooks/transformer.ipynb` walks through it.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

# ---------------------------------------------------------------------------------------
# Part 1. Vocabulary and tokenization
# ---------------------------------------------------------------------------------------

SPECIAL_TOKENS = ["POSITIVE", "NEGATIVE", "add", "subtract", "BOS", "EOS", "PAD"]
VOCAB = [str(d) for d in range(10)] + SPECIAL_TOKENS  # "0".."9" get ids 0..9


def generate_token_dict(vocab: list[str]) -> dict[str, int]:
    """Map each token of `vocab` to its index: the i-th entry gets id i."""
    # BEGIN SOLUTION
    # HINT: the i-th token maps to i.
    return {token: index for index, token in enumerate(vocab)}
    # END SOLUTION


def preprocess_input_sequence(expression: str, token_dict: dict[str, int],
                              special_tokens: list[str]) -> list[int]:
    """Turn an expression string into a list of token ids.

    Split on whitespace. A special token maps to its own id; any other word is a number
    and becomes one token per digit: "BOS POSITIVE 04 EOS" -> [BOS, POSITIVE, 0, 4, EOS].
    """
    # BEGIN SOLUTION
    # HINT: split on whitespace: a special token is one id, a number one id per digit.
    ids = []
    for word in expression.split():
        if word in special_tokens:
            ids.append(token_dict[word])
        else:
            ids.extend(token_dict[digit] for digit in word)
    return ids
    # END SOLUTION


# ---------------------------------------------------------------------------------------
# Part 2. Scaled dot-product attention
# ---------------------------------------------------------------------------------------

def scaled_dot_product_two_loop_single(query: torch.Tensor, key: torch.Tensor,
                                       value: torch.Tensor) -> torch.Tensor:
    """softmax(Q K^T / sqrt(M)) V for one sequence, with two explicit Python loops.

    query, key, value: (K, M). Returns (K, M), in the inputs' dtype (build the score matrix
    with dtype=query.dtype: the graded inputs are float64).

    Off limits here (library shortcuts that would do this part's work; using one costs its
    cases): `torch.nn.functional.scaled_dot_product_attention`,
    `torch.nn.MultiheadAttention`, `torch.nn.functional.multi_head_attention_forward`.
    """
    # BEGIN SOLUTION
    # HINT: two loops fill the (K, K) scores, one entry per query row i and key row j, scaled by
    #       1/sqrt(M); normalise each query's row; then mix the values.
    K, M = query.shape
    scores = torch.empty(K, key.shape[0], dtype=query.dtype, device=query.device)
    for i in range(K):
        for j in range(key.shape[0]):
            scores[i, j] = torch.dot(query[i], key[j]) / math.sqrt(M)
    return torch.softmax(scores, dim=-1) @ value
    # END SOLUTION


def scaled_dot_product_two_loop_batch(query: torch.Tensor, key: torch.Tensor,
                                      value: torch.Tensor) -> torch.Tensor:
    """The batched version: query, key, value (N, K, M) -> (N, K, M), two loops over i and j.

    Off limits here (library shortcuts that would do this part's work; using one costs its
    cases): `torch.nn.functional.scaled_dot_product_attention`,
    `torch.nn.MultiheadAttention`, `torch.nn.functional.multi_head_attention_forward`.
    """
    # BEGIN SOLUTION
    # HINT: the single version's loops, where each score is a (N,) vector over the batch.
    N, K, M = query.shape
    scores = torch.empty(N, K, key.shape[1], dtype=query.dtype, device=query.device)
    for i in range(K):
        for j in range(key.shape[1]):
            scores[:, i, j] = (query[:, i] * key[:, j]).sum(-1) / math.sqrt(M)
    return torch.bmm(torch.softmax(scores, dim=-1), value)
    # END SOLUTION


def scaled_dot_product_no_loop_batch(query: torch.Tensor, key: torch.Tensor,
                                     value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """No loops at all. query (N, K, M), key (N, S, M), value (N, S, D).

    Returns (output (N, K, D), weights (N, K, S)); each row of `weights` sums to 1.

    Off limits here (library shortcuts that would do this part's work; using one costs its
    cases): `torch.nn.functional.scaled_dot_product_attention`,
    `torch.nn.MultiheadAttention`, `torch.nn.functional.multi_head_attention_forward`.
    """
    # BEGIN SOLUTION
    # HINT: every score at once, (N, K, S), from batched products; masked entries get no weight;
    #       return the output and the weights.
    scores = torch.bmm(query, key.transpose(1, 2)) / math.sqrt(query.shape[-1])  # (N, K, S)
    weights = torch.softmax(scores, dim=-1)
    return torch.bmm(weights, value), weights
    # END SOLUTION


def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                 key_padding_mask: torch.Tensor | None = None,
                                 causal: bool = False) -> torch.Tensor:
    """Vectorized attention with masking.

    Args:
        q: (n, tgt_len, d_head); k, v: (n, src_len, d_head); n is batch * heads.
        key_padding_mask: (n, src_len), 1 (True) where the key is PAD and gets weight 0.
            bool, uint8 or int, on any device (it is moved to q's device). None means no
            padding.
        causal: if True, query i attends to keys j <= i only.
    Returns:
        (n, tgt_len, d_head), in the dtype of `v`. The softmax runs in at least float32:
        float16/bfloat16 scores are upcast to float32 (and the weights cast back to v's
        dtype); float32 and float64 scores keep their dtype.

    Off limits here (library shortcuts that would do this part's work; using one costs its
    cases): `torch.nn.functional.scaled_dot_product_attention`,
    `torch.nn.MultiheadAttention`, `torch.nn.functional.multi_head_attention_forward`.
    """
    # BEGIN SOLUTION
    # HINT: scores (n, tgt_len, src_len); padded keys (a mask of any integer dtype) and, when
    #       causal, keys after the query get no weight; normalise in at least float32, then mix
    #       the values in v's dtype.
    scale = 1.0 / math.sqrt(q.shape[-1])  # on q: T*d multiplications instead of T*S
    scores = torch.bmm(q * scale, k.transpose(1, 2))  # (n, T, S)
    scores = scores.to(torch.promote_types(scores.dtype, torch.float32))  # float16 -> float32
    if key_padding_mask is not None:
        key_padding_mask = key_padding_mask.to(q.device)  # a mask built on the CPU too
        scores = scores.masked_fill(key_padding_mask.bool()[:, None, :], float("-inf"))
    if causal:
        future = torch.ones(q.shape[1], k.shape[1], dtype=torch.bool, device=q.device).triu(1)
        scores = scores.masked_fill(future, float("-inf"))
    weights = torch.softmax(scores, dim=-1).to(v.dtype)
    return torch.bmm(weights, v)
    # END SOLUTION


# ---------------------------------------------------------------------------------------
# Part 3. Multi-head attention
# ---------------------------------------------------------------------------------------

class MultiheadAttention(nn.Module):
    """Multi-head attention with separate q/k/v/o projections (each d_model -> d_model, bias).

    Head h owns channels h*d_head .. (h+1)*d_head of every projection, the same layout as
    `torch.nn.MultiheadAttention`, so weights copy over one to one.
    """

    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.n_heads = n_heads
        self.d_head = d_model // n_heads
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.o_proj = nn.Linear(d_model, d_model)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                key_padding_mask: torch.Tensor | None = None,
                causal: bool = False) -> torch.Tensor:
        """q: (B, T, d_model); k, v: (B, S, d_model); key_padding_mask: (B, S), 1 = pad.

        Returns (B, T, d_model).

        Off limits here (library shortcuts that would do this part's work; using one costs
        its cases): `torch.nn.MultiheadAttention`,
        `torch.nn.functional.multi_head_attention_forward`.
        """
        # BEGIN SOLUTION
        # HINT: project, then make each head's channel block its own batch row, (B * n_heads,
        #       len, d_head), with the mask repeated in the same (batch, head) order; attend,
        #       undo the split, project out.
        B, T, C = q.shape
        S = k.shape[1]

        def split_heads(x, length):  # (B, L, C) -> (B * H, L, d_head)
            return x.view(B, length, self.n_heads, self.d_head).transpose(1, 2).reshape(
                B * self.n_heads, length, self.d_head)

        qh = split_heads(self.q_proj(q), T)
        kh = split_heads(self.k_proj(k), S)
        vh = split_heads(self.v_proj(v), S)
        if key_padding_mask is not None:  # one copy of each row per head, (b, h) order
            key_padding_mask = key_padding_mask.repeat_interleave(self.n_heads, dim=0)
        out = scaled_dot_product_attention(qh, kh, vh, key_padding_mask, causal)  # (B*H, T, d)
        out = out.view(B, self.n_heads, T, self.d_head).transpose(1, 2).reshape(B, T, C)
        return self.o_proj(out)
        # END SOLUTION


# ---------------------------------------------------------------------------------------
# Part 4. Layer norm, feed-forward block and positions
# ---------------------------------------------------------------------------------------

class LayerNorm(nn.Module):
    """Normalize over the last dimension with the population (biased) variance.

    y = (x - mean) / sqrt(var + eps) * weight + bias; weight starts at 1, bias at 0.
    Same parameters and defaults as `torch.nn.LayerNorm(d_model)`.
    """

    def __init__(self, d_model: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., d_model) -> same shape.

        Off limits here (library shortcuts that would do this part's work; using one costs
        its cases): `torch.nn.functional.layer_norm`, `torch.layer_norm`,
        `torch.native_layer_norm`, `torch.nn.LayerNorm`.
        """
        # BEGIN SOLUTION
        # HINT: the mean and the population variance over the last dimension, eps inside the
        #       square root, then the per-feature scale and shift.
        mean = x.mean(dim=-1, keepdim=True)
        var = x.var(dim=-1, unbiased=False, keepdim=True)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias
        # END SOLUTION


class FeedForward(nn.Module):
    """Position-wise feed-forward block: fc2(ReLU(fc1(x))), d_model -> d_ffn -> d_model."""

    def __init__(self, d_model: int, d_ffn: int):
        super().__init__()
        self.fc1 = nn.Linear(d_model, d_ffn)
        self.fc2 = nn.Linear(d_ffn, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., d_model) -> same shape."""
        # BEGIN SOLUTION
        # HINT: two Linear layers with a ReLU between them.
        return self.fc2(torch.relu(self.fc1(x)))
        # END SOLUTION


def sinusoidal_positions(num_positions: int, d_model: int) -> torch.Tensor:
    """The standard sinusoidal encoding, (num_positions, d_model), float32.

    PE[p, 2i] = sin(p / 10000^(2i / d_model)) and PE[p, 2i+1] = cos(p / 10000^(2i / d_model)):
    each sin/cos pair shares one frequency. With an odd d_model the last column is a sine.
    """
    # BEGIN SOLUTION
    # HINT: every position (P, 1) meets every pair's frequency (1, ceil(d/2)); the angles give
    #       sines in the even columns and cosines in the odd ones.
    positions = torch.arange(num_positions, dtype=torch.float64)[:, None]          # (P, 1)
    even = torch.arange(0, d_model, 2, dtype=torch.float64)                         # (ceil(d/2),)
    angles = positions / torch.pow(10000.0, even / d_model)                         # (P, ceil(d/2))
    pe = torch.zeros(num_positions, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angles)
    pe[:, 1::2] = torch.cos(angles[:, : d_model // 2])
    return pe.float()
    # END SOLUTION


# ---------------------------------------------------------------------------------------
# Part 5. Encoder and decoder layers
# ---------------------------------------------------------------------------------------

class TransformerLayer(nn.Module):
    """One post-LN Transformer layer, as in "Attention is all you need" (Figure 1).

    Each sublayer is wrapped as x = LN(x + Dropout(sublayer(x))): self-attention, then
    (decoder only) cross-attention to the encoder output, then the feed-forward block.
    The decoder's self-attention is causal. Dropout (rate p_drop, in training mode only) is
    applied to each sublayer's output before it is added: nowhere else (not after the
    LayerNorm, not to the attention weights or the embeddings).
    """

    def __init__(self, is_decoder: bool, d_model: int, n_heads: int, d_ffn: int, p_drop: float):
        super().__init__()
        self.is_decoder = is_decoder
        self.self_attn = MultiheadAttention(d_model, n_heads)
        self.self_attn_drop = nn.Dropout(p_drop)
        self.self_attn_ln = LayerNorm(d_model)
        if is_decoder:
            self.cross_attn = MultiheadAttention(d_model, n_heads)
            self.cross_attn_drop = nn.Dropout(p_drop)
            self.cross_attn_ln = LayerNorm(d_model)
        self.ffn = FeedForward(d_model, d_ffn)
        self.ffn_drop = nn.Dropout(p_drop)
        self.ffn_ln = LayerNorm(d_model)

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                encoder_out: torch.Tensor | None = None,
                encoder_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, T, d_model); padding_mask: (B, T), 1 = pad.

        Decoder only: encoder_out (B, S, d_model) and encoder_padding_mask (B, S).
        Returns (B, T, d_model).

        Off limits here (library shortcuts that would do this part's work; using one costs
        its cases): `torch.nn.TransformerEncoderLayer`, `torch.nn.TransformerDecoderLayer`,
        `torch.nn.TransformerEncoder`, `torch.nn.TransformerDecoder`,
        `torch.nn.Transformer`.
        """
        # BEGIN SOLUTION
        # HINT: post-LN sublayers: self-attention (causal in a decoder), cross-attention on
        #       encoder_out (decoder only), the feed-forward; each output goes through its
        #       dropout, is added to its input, and the sum is normalised.
        x = self.self_attn_ln(x + self.self_attn_drop(
            self.self_attn(x, x, x, padding_mask, causal=self.is_decoder)))
        if self.is_decoder:
            x = self.cross_attn_ln(x + self.cross_attn_drop(
                self.cross_attn(x, encoder_out, encoder_out, encoder_padding_mask)))
        return self.ffn_ln(x + self.ffn_drop(self.ffn(x)))
        # END SOLUTION


# ---------------------------------------------------------------------------------------
# Part 6. The encoder-decoder model and greedy decoding
# ---------------------------------------------------------------------------------------

class Transformer(nn.Module):
    """Encoder-decoder Transformer with shared word embeddings and a tied output layer.

    Embeddings are emb_ln(word embedding + learned position embedding); the encoder and the
    decoder share `emb_word`, `emb_pos` and `emb_ln`. `lm_head.weight` is `emb_word.weight`.
    The decoder input is the target shifted right with EOS as its first token, and label
    -100 is ignored by the loss.
    """

    def __init__(self, n_words: int, pad_id: int, eos_id: int, max_len: int, n_layers: int,
                 d_model: int, n_heads: int, d_ffn: int, p_drop: float):
        super().__init__()
        self.pad_id = pad_id
        self.eos_id = eos_id
        self.emb_word = nn.Embedding(n_words, d_model)
        self.emb_pos = nn.Embedding(max_len, d_model)
        self.emb_ln = LayerNorm(d_model)
        nn.init.uniform_(self.emb_word.weight, -0.05, 0.05)
        nn.init.uniform_(self.emb_pos.weight, -0.05, 0.05)
        self.encoder_layers = nn.ModuleList(
            TransformerLayer(False, d_model, n_heads, d_ffn, p_drop) for _ in range(n_layers))
        self.decoder_layers = nn.ModuleList(
            TransformerLayer(True, d_model, n_heads, d_ffn, p_drop) for _ in range(n_layers))
        self.lm_head = nn.Linear(d_model, n_words)
        self.lm_head.weight = self.emb_word.weight  # tied: one matrix for input and output

    def make_positions(self, input_ids: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        """Positions 0 .. L-1 for every row: same shape and dtype as `input_ids` (B, L)."""
        # BEGIN SOLUTION
        # HINT: 0..L-1 in every row, with input_ids' shape, dtype and device.
        B, L = input_ids.shape
        return torch.arange(L, dtype=input_ids.dtype, device=input_ids.device).expand(B, L).clone()
        # END SOLUTION

    def embed(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids (B, L) -> (embeddings (B, L, d_model), padding_mask (B, L) bool)."""
        padding_mask = input_ids.eq(self.pad_id)
        positions = self.make_positions(input_ids, padding_mask)
        return self.emb_ln(self.emb_word(input_ids) + self.emb_pos(positions)), padding_mask

    def encode(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """input_ids (B, S) -> (encoder states (B, S, d_model), encoder padding mask (B, S)).

        Off limits here (library shortcuts that would do this part's work; using one costs
        its cases): `torch.nn.TransformerEncoderLayer`, `torch.nn.TransformerDecoderLayer`,
        `torch.nn.TransformerEncoder`, `torch.nn.TransformerDecoder`,
        `torch.nn.Transformer`.
        """
        # BEGIN SOLUTION
        # HINT: embed the ids, then run every encoder layer in turn; return the states and the
        #       padding mask.
        x, padding_mask = self.embed(input_ids)
        for layer in self.encoder_layers:
            x = layer(x, padding_mask)
        return x, padding_mask
        # END SOLUTION

    def decode(self, decoder_input_ids: torch.Tensor, encoder_out: torch.Tensor,
               encoder_padding_mask: torch.Tensor) -> torch.Tensor:
        """decoder_input_ids (B, T) -> logits (B, T, n_words).

        Off limits here (library shortcuts that would do this part's work; using one costs
        its cases): `torch.nn.TransformerEncoderLayer`, `torch.nn.TransformerDecoderLayer`,
        `torch.nn.TransformerEncoder`, `torch.nn.TransformerDecoder`,
        `torch.nn.Transformer`.
        """
        # BEGIN SOLUTION
        # HINT: embed, run every decoder layer against the encoder's states and mask, then map
        #       to the vocabulary.
        x, padding_mask = self.embed(decoder_input_ids)
        for layer in self.decoder_layers:
            x = layer(x, padding_mask, encoder_out, encoder_padding_mask)
        return self.lm_head(x)
        # END SOLUTION

    def shift_right(self, labels: torch.Tensor) -> torch.Tensor:
        """Decoder input from labels (B, T): [EOS, labels[:, :-1]] with -100 replaced by PAD."""
        # BEGIN SOLUTION
        # HINT: a (B, T) tensor that starts with EOS and continues with the labels one step
        #       later; -100 becomes PAD.
        shifted = labels.new_full(labels.shape, self.eos_id)
        shifted[:, 1:] = labels[:, :-1]
        return shifted.masked_fill(shifted.eq(-100), self.pad_id)
        # END SOLUTION

    def forward(self, input_ids: torch.Tensor,
                labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """input_ids (B, S), labels (B, T) -> (logits (B, T, n_words), mean cross-entropy).

        Positions whose label is -100 do not count in the loss (and their logits are not
        graded). The loss is a scalar computed in at least float32 (float16 logits are
        upcast first).

        Off limits here (library shortcuts that would do this part's work; using one costs
        its cases): `torch.nn.TransformerEncoderLayer`, `torch.nn.TransformerDecoderLayer`,
        `torch.nn.TransformerEncoder`, `torch.nn.TransformerDecoder`,
        `torch.nn.Transformer`.
        """
        # BEGIN SOLUTION
        # HINT: the decoder reads the shifted labels; the loss is the mean cross-entropy over
        #       positions whose label is not -100.
        encoder_out, encoder_padding_mask = self.encode(input_ids)
        logits = self.decode(self.shift_right(labels), encoder_out, encoder_padding_mask)
        wide = torch.promote_types(logits.dtype, torch.float32)
        loss = F.cross_entropy(logits.flatten(0, 1).to(wide), labels.flatten(), ignore_index=-100)
        return logits, loss
        # END SOLUTION


@torch.no_grad()
def greedy_decode(model: Transformer, input_ids: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """Generate with argmax, one token at a time, starting from EOS.

    Returns the generated ids (B, max_new_tokens), without the starting EOS. A row that has
    produced EOS keeps producing PAD afterwards. Puts the model in eval mode first
    (`model.eval()`: no dropout while decoding) and leaves it there.
    """
    # BEGIN SOLUTION
    # HINT: encode once; grow the output from EOS, each step adding the most likely token after
    #       the last position; PAD after a row's EOS.
    model.eval()
    encoder_out, encoder_padding_mask = model.encode(input_ids)
    generated = input_ids.new_full((input_ids.shape[0], 1), model.eos_id)
    finished = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
    for _ in range(max_new_tokens):
        logits = model.decode(generated, encoder_out, encoder_padding_mask)  # (B, t, V)
        next_id = logits[:, -1].argmax(-1).masked_fill(finished, model.pad_id)
        finished |= next_id.eq(model.eos_id)
        generated = torch.cat([generated, next_id[:, None]], dim=1)
    return generated[:, 1:]
    # END SOLUTION


# ---------------------------------------------------------------------------------------
# Part 7. Summarization: batches, the masked loss, decoding that stops, training
# ---------------------------------------------------------------------------------------

IGNORE_INDEX = -100  # label of a padded target position: no loss, fed to the decoder as PAD


def collate_summaries(documents: list[list[int]], summaries: list[list[int]], pad_id: int,
                      eos_id: int, max_source_len: int,
                      max_target_len: int) -> dict[str, torch.Tensor]:
    """One padded batch of (document, summary) token-id lists, as int64 tensors.

    Each document is cut to max_source_len - 1 tokens and EOS is appended; each summary is
    cut to max_target_len - 1 tokens and EOS is appended. S and T are the longest such rows
    of this batch (not the maximum lengths). Returns
        input_ids (B, S): documents, padded with pad_id at the end;
        labels (B, T): summaries, padded with -100 (IGNORE_INDEX) at the end;
        decoder_input_ids (B, T): labels shifted right with eos_id as the start token,
            [eos_id, labels[:, :-1]], every -100 replaced by pad_id (what
            `Transformer.shift_right` does).
    """
    # BEGIN SOLUTION
    # HINT: append EOS after cutting, pad each row to the longest, then shift the labels right.
    if len(documents) != len(summaries) or not documents:
        raise ValueError(f"need as many summaries as documents (>= 1), got "
                         f"{len(documents)} and {len(summaries)}")
    if max_source_len < 1 or max_target_len < 1:
        raise ValueError(f"max_source_len={max_source_len} and max_target_len={max_target_len} "
                         f"must be >= 1 (room for EOS)")
    sources = [list(d[:max_source_len - 1]) + [eos_id] for d in documents]
    targets = [list(t[:max_target_len - 1]) + [eos_id] for t in summaries]
    S, T = max(map(len, sources)), max(map(len, targets))
    input_ids = torch.tensor([row + [pad_id] * (S - len(row)) for row in sources])
    labels = torch.tensor([row + [IGNORE_INDEX] * (T - len(row)) for row in targets])
    decoder_input_ids = torch.full_like(labels, eos_id)
    decoder_input_ids[:, 1:] = labels[:, :-1]
    decoder_input_ids = decoder_input_ids.masked_fill(decoder_input_ids.eq(IGNORE_INDEX), pad_id)
    return {"input_ids": input_ids, "labels": labels, "decoder_input_ids": decoder_input_ids}
    # END SOLUTION


def masked_token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the positions whose label is not -100.

    logits (B, T, V), labels (B, T) int64. Each real target token counts once, whatever row
    it is in: the sum of their losses over their number (not over B * T, and not a mean of
    per-row means). A scalar in at least float32 (float16 logits are upcast first).
    """
    # BEGIN SOLUTION
    # HINT: the mean cross-entropy over the positions whose label is not -100: (B, T, V) logits
    #       against (B, T) labels.
    wide = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return F.cross_entropy(wide.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)
    # END SOLUTION


@torch.no_grad()
def greedy_summarize(model: Transformer, input_ids: torch.Tensor,
                     max_new_tokens: int) -> torch.Tensor:
    """Greedy decoding (as `greedy_decode`, starting from EOS) that stops early.

    Returns the generated ids (B, t) without the starting EOS, where t <= max_new_tokens is
    the step at which the last row produced EOS (max_new_tokens if some row never does).
    A row that has produced EOS continues with PAD. Like `greedy_decode`, puts the model in
    eval mode first and leaves it there.
    """
    # BEGIN SOLUTION
    # HINT: greedy_decode's loop, plus a break once every row is finished.
    model.eval()
    memory, memory_mask = model.encode(input_ids)
    out = input_ids.new_full((input_ids.shape[0], 1), model.eos_id)  # (B, 1): the start
    done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
    for _ in range(max_new_tokens):
        token = model.decode(out, memory, memory_mask)[:, -1].argmax(-1)  # (B,)
        token = token.masked_fill(done, model.pad_id)
        done = done | token.eq(model.eos_id)
        out = torch.cat([out, token[:, None]], dim=1)
        if bool(done.all()):
            break
    return out[:, 1:]
    # END SOLUTION


def train_summarizer(model: Transformer, documents: list[list[int]],
                     summaries: list[list[int]], *, steps: int, batch_size: int, lr: float,
                     max_source_len: int, max_target_len: int, warmup: int = 50, seed: int = 0,
                     device="cpu", on_step=None) -> list[float]:
    """Teacher forcing: returns the training loss of every step.

    Each step draws `batch_size` pairs with `dlkit.train.batches(len(documents), batch_size,
    torch.Generator().manual_seed(seed))`, builds them with `collate_summaries`, runs
    `model.decode(decoder_input_ids, *model.encode(input_ids))` and takes one AdamW step
    (weight decay 0.01, gradients clipped to norm 1) on `masked_token_loss`, with the
    learning rate `lr * dlkit.train.warmup_cosine(step, steps, warmup)` (step counting from
    0). on_step(step, steps, loss) is called after each step with the number of steps done so
    far (1 after the first step, `steps` after the last) and that step's loss as a float (the
    grader reports progress with it). The returned losses are the same floats, one per step.
    Leaves the model in eval mode.
    """
    # BEGIN SOLUTION
    # HINT: dlkit.train.train_seq2seq is the same loop for fixed-size batches: adapt it.
    from dlkit.train import batches, warmup_cosine
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_cosine(s, steps, warmup))
    sampler = batches(len(documents), batch_size, torch.Generator().manual_seed(seed))
    losses = []
    for step in range(steps):
        index = next(sampler).tolist()
        batch = collate_summaries([documents[i] for i in index], [summaries[i] for i in index],
                                  model.pad_id, model.eos_id, max_source_len, max_target_len)
        batch = {k: v.to(device) for k, v in batch.items()}
        logits = model.decode(batch["decoder_input_ids"], *model.encode(batch["input_ids"]))
        loss = masked_token_loss(logits, batch["labels"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if on_step is not None:
            on_step(step + 1, steps, losses[-1])
    model.eval()
    return losses
    # END SOLUTION
