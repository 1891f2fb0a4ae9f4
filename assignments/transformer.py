# Generated from solutions/transformer.py by `python -m grader skeletons`.
# Fill in every TODO; keep names, signatures and attribute names as they are.
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
    # TODO: the i-th token maps to i.
    raise NotImplementedError("generate_token_dict: not implemented yet")


def preprocess_input_sequence(expression: str, token_dict: dict[str, int],
                              special_tokens: list[str]) -> list[int]:
    """Turn an expression string into a list of token ids.

    Split on whitespace. A special token maps to its own id; any other word is a number
    and becomes one token per digit: "BOS POSITIVE 04 EOS" -> [BOS, POSITIVE, 0, 4, EOS].
    """
    # TODO: split on whitespace: a special token is one id, a number one id per digit.
    raise NotImplementedError("preprocess_input_sequence: not implemented yet")


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
    # TODO: two loops fill the (K, K) scores, one entry per query row i and key row j, scaled by
    #       1/sqrt(M); normalise each query's row; then mix the values.
    raise NotImplementedError("scaled_dot_product_two_loop_single: not implemented yet")


def scaled_dot_product_two_loop_batch(query: torch.Tensor, key: torch.Tensor,
                                      value: torch.Tensor) -> torch.Tensor:
    """The batched version: query, key, value (N, K, M) -> (N, K, M), two loops over i and j.

    Off limits here (library shortcuts that would do this part's work; using one costs its
    cases): `torch.nn.functional.scaled_dot_product_attention`,
    `torch.nn.MultiheadAttention`, `torch.nn.functional.multi_head_attention_forward`.
    """
    # TODO: the single version's loops, where each score is a (N,) vector over the batch.
    raise NotImplementedError("scaled_dot_product_two_loop_batch: not implemented yet")


def scaled_dot_product_no_loop_batch(query: torch.Tensor, key: torch.Tensor,
                                     value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """No loops at all. query (N, K, M), key (N, S, M), value (N, S, D).

    Returns (output (N, K, D), weights (N, K, S)); each row of `weights` sums to 1.

    Off limits here (library shortcuts that would do this part's work; using one costs its
    cases): `torch.nn.functional.scaled_dot_product_attention`,
    `torch.nn.MultiheadAttention`, `torch.nn.functional.multi_head_attention_forward`.
    """
    # TODO: every score at once, (N, K, S), from batched products; masked entries get no weight;
    #       return the output and the weights.
    raise NotImplementedError("scaled_dot_product_no_loop_batch: not implemented yet")


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
    # TODO: scores (n, tgt_len, src_len); padded keys (a mask of any integer dtype) and, when
    #       causal, keys after the query get no weight; normalise in at least float32, then mix
    #       the values in v's dtype.
    raise NotImplementedError("scaled_dot_product_attention: not implemented yet")


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
        # TODO: project, then make each head's channel block its own batch row, (B * n_heads,
        #       len, d_head), with the mask repeated in the same (batch, head) order; attend,
        #       undo the split, project out.
        raise NotImplementedError("MultiheadAttention.forward: not implemented yet")


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
        # TODO: the mean and the population variance over the last dimension, eps inside the
        #       square root, then the per-feature scale and shift.
        raise NotImplementedError("LayerNorm.forward: not implemented yet")


class FeedForward(nn.Module):
    """Position-wise feed-forward block: fc2(ReLU(fc1(x))), d_model -> d_ffn -> d_model."""

    def __init__(self, d_model: int, d_ffn: int):
        super().__init__()
        self.fc1 = nn.Linear(d_model, d_ffn)
        self.fc2 = nn.Linear(d_ffn, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., d_model) -> same shape."""
        # TODO: two Linear layers with a ReLU between them.
        raise NotImplementedError("FeedForward.forward: not implemented yet")


def sinusoidal_positions(num_positions: int, d_model: int) -> torch.Tensor:
    """The standard sinusoidal encoding, (num_positions, d_model), float32.

    PE[p, 2i] = sin(p / 10000^(2i / d_model)) and PE[p, 2i+1] = cos(p / 10000^(2i / d_model)):
    each sin/cos pair shares one frequency. With an odd d_model the last column is a sine.
    """
    # TODO: every position (P, 1) meets every pair's frequency (1, ceil(d/2)); the angles give
    #       sines in the even columns and cosines in the odd ones.
    raise NotImplementedError("sinusoidal_positions: not implemented yet")


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
        # TODO: post-LN sublayers: self-attention (causal in a decoder), cross-attention on
        #       encoder_out (decoder only), the feed-forward; each output goes through its
        #       dropout, is added to its input, and the sum is normalised.
        raise NotImplementedError("TransformerLayer.forward: not implemented yet")


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
        # TODO: 0..L-1 in every row, with input_ids' shape, dtype and device.
        raise NotImplementedError("Transformer.make_positions: not implemented yet")

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
        # TODO: embed the ids, then run every encoder layer in turn; return the states and the
        #       padding mask.
        raise NotImplementedError("Transformer.encode: not implemented yet")

    def decode(self, decoder_input_ids: torch.Tensor, encoder_out: torch.Tensor,
               encoder_padding_mask: torch.Tensor) -> torch.Tensor:
        """decoder_input_ids (B, T) -> logits (B, T, n_words).

        Off limits here (library shortcuts that would do this part's work; using one costs
        its cases): `torch.nn.TransformerEncoderLayer`, `torch.nn.TransformerDecoderLayer`,
        `torch.nn.TransformerEncoder`, `torch.nn.TransformerDecoder`,
        `torch.nn.Transformer`.
        """
        # TODO: embed, run every decoder layer against the encoder's states and mask, then map
        #       to the vocabulary.
        raise NotImplementedError("Transformer.decode: not implemented yet")

    def shift_right(self, labels: torch.Tensor) -> torch.Tensor:
        """Decoder input from labels (B, T): [EOS, labels[:, :-1]] with -100 replaced by PAD."""
        # TODO: a (B, T) tensor that starts with EOS and continues with the labels one step
        #       later; -100 becomes PAD.
        raise NotImplementedError("Transformer.shift_right: not implemented yet")

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
        # TODO: the decoder reads the shifted labels; the loss is the mean cross-entropy over
        #       positions whose label is not -100.
        raise NotImplementedError("Transformer.forward: not implemented yet")


@torch.no_grad()
def greedy_decode(model: Transformer, input_ids: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """Generate with argmax, one token at a time, starting from EOS.

    Returns the generated ids (B, max_new_tokens), without the starting EOS. A row that has
    produced EOS keeps producing PAD afterwards. Puts the model in eval mode first
    (`model.eval()`: no dropout while decoding) and leaves it there.
    """
    # TODO: encode once; grow the output from EOS, each step adding the most likely token after
    #       the last position; PAD after a row's EOS.
    raise NotImplementedError("greedy_decode: not implemented yet")


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
    # TODO: append EOS after cutting, pad each row to the longest, then shift the labels right.
    raise NotImplementedError("collate_summaries: not implemented yet")


def masked_token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the positions whose label is not -100.

    logits (B, T, V), labels (B, T) int64. Each real target token counts once, whatever row
    it is in: the sum of their losses over their number (not over B * T, and not a mean of
    per-row means). A scalar in at least float32 (float16 logits are upcast first).
    """
    # TODO: the mean cross-entropy over the positions whose label is not -100: (B, T, V) logits
    #       against (B, T) labels.
    raise NotImplementedError("masked_token_loss: not implemented yet")


@torch.no_grad()
def greedy_summarize(model: Transformer, input_ids: torch.Tensor,
                     max_new_tokens: int) -> torch.Tensor:
    """Greedy decoding (as `greedy_decode`, starting from EOS) that stops early.

    Returns the generated ids (B, t) without the starting EOS, where t <= max_new_tokens is
    the step at which the last row produced EOS (max_new_tokens if some row never does).
    A row that has produced EOS continues with PAD. Like `greedy_decode`, puts the model in
    eval mode first and leaves it there.
    """
    # TODO: greedy_decode's loop, plus a break once every row is finished.
    raise NotImplementedError("greedy_summarize: not implemented yet")


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
    # TODO: dlkit.train.train_seq2seq is the same loop for fixed-size batches: adapt it.
    raise NotImplementedError("train_summarizer: not implemented yet")
