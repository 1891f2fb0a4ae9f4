# Generated from solutions/gpt.py by `python -m grader skeletons`.
# Fill in every TODO; keep names, signatures and attribute names as they are.
"""A decoder-only language model (a small GPT) on Shakespeare's dialogues.

You build, in order:

1. `AttentionHead`, `MultiHeadedAttention` (a loop over heads) and the `Transformer` stack
   (the feed-forward block `FFN` and the residual block `AttentionResidual` are given);
2. `MyTokenizer.encode` / `decode`, a word-level tokenizer with <START>=0, <PAD>=1, <UNK>=2;
3. `DialogueGPT`: token and position embeddings, the causal mask, and `DialogueLoss`, the
   next-token cross-entropy that ignores padding;
4. decoding: `top_k_filter`, `top_p_filter` (nucleus), `sample_next_token` (greedy or
   sampled, with a temperature) and `DialogueGPT.generate`, with and without a KV cache.

Conventions used everywhere in this file:
- Batch first: sequences are (B, T, C); token ids are int64 (B, T).
- **Attention masks say who may look at whom**: `attn_mask[b, i, j] == 1` (or True, or
  1.0) means query position i MAY attend to key position j, and 0 blocks it. This is the
  opposite of the `transformer` assignment's key-padding masks (1 = pad, ignore). A mask of
  any dtype (bool, int, float) is accepted, and it may live on another device than the
  scores (move it). Blocked positions get weight exactly 0 (fill the scores with -inf).
- The padding mask of a batch (`input_mask`) is 1 for real tokens and 0 for <PAD>.
- Every batch size works, 1 included: a bare `.squeeze()` drops the batch dimension too.
- The classes work in any floating dtype; the graded cases run them in float64.

Run `make grade A=gpt` to score this file; `notebooks/gpt.ipynb` walks through it.
"""
import math
from typing import Optional

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence

from dlkit.shakespeare import word_tokenize

# ---------------------------------------------------------------------------------------
# Part 1. Attention and the transformer stack
# ---------------------------------------------------------------------------------------


class AttentionHead(nn.Module):
    """One head of self-attention, with projections `W_Q`, `W_K`, `W_V` (dim -> n_hidden)."""

    def __init__(self, dim: int, n_hidden: int):
        super().__init__()
        self.W_K = nn.Linear(dim, n_hidden)
        self.W_Q = nn.Linear(dim, n_hidden)
        self.W_V = nn.Linear(dim, n_hidden)
        self.n_hidden = n_hidden

    def forward(self, x: Tensor, attn_mask: Optional[Tensor],
                kv_cache: Optional[dict] = None) -> tuple[Tensor, Tensor]:
        """Scaled dot-product self-attention of one head.

        x: (B, T, dim). attn_mask: None (everyone sees everyone) or (B, T, S), where
        attn_mask[b, i, j] == 1 means query i MAY attend to key j and 0 blocks it (any
        dtype, possibly on another device). Without a cache S = T.
        kv_cache: None, or a dict holding this head's keys and values of earlier positions
        ("k", "v": (B, P, n_hidden); empty before the first call). When given, the new keys
        and values are appended after the cached ones (so S = P + T), and the dict is
        updated to hold all S of them.
        Returns (out (B, T, n_hidden), alpha (B, T, S)) with
        alpha = softmax(Q K^T / sqrt(n_hidden)) over the keys (blocked entries exactly 0)
        and out = alpha V.

        Off limits here (library shortcuts that would do this part's work; using one costs
        its cases): `torch.nn.functional.scaled_dot_product_attention`.
        """
        # TODO: queries, keys and values from x; with a cache, the new keys and values follow
        #       the cached ones in time and the cache keeps them all; pairs whose mask is 0 get
        #       weight exactly 0.
        raise NotImplementedError("AttentionHead.forward: not implemented yet")


class MultiHeadedAttention(nn.Module):
    """`num_heads` AttentionHeads side by side, then one projection back to `dim`.

    Attribute names (the grader loads weights by name): `heads`, an nn.ModuleList of
    `num_heads` AttentionHead(dim, n_hidden), and `project`, nn.Linear(num_heads *
    n_hidden, dim).

    Off limits here (library shortcuts that would do this part's work; using one costs its
    cases): `torch.nn.MultiheadAttention`,
    `torch.nn.functional.multi_head_attention_forward`.
    """

    def __init__(self, dim: int, n_hidden: int, num_heads: int):
        super().__init__()
        # TODO: num_heads independent heads as registered submodules, and a projection from
        #       their joined width back to dim (names in the docstring).
        raise NotImplementedError("MultiHeadedAttention.__init__: not implemented yet")

    def forward(self, x: Tensor, attn_mask: Optional[Tensor],
                kv_cache: Optional[list] = None) -> tuple[Tensor, Tensor]:
        """x: (B, T, dim); attn_mask as in AttentionHead (1 = may attend).

        kv_cache: None, or a list with one dict per head (head h gets kv_cache[h]).
        Loop over the heads: concatenate their outputs on the last dimension (head 0
        first), project them, and stack their weights on dim 1.
        Returns (out (B, T, dim), alphas (B, num_heads, T, S)).
        """
        # TODO: every head on the same x (head h with its own cache entry); join the outputs
        #       feature-wise, head 0 first, and project; all heads' weights make (B, num_heads,
        #       T, T).
        raise NotImplementedError("MultiHeadedAttention.forward: not implemented yet")


class FFN(nn.Module):
    """Given: LayerNorm, Linear(dim, n_hidden), GELU, Linear(n_hidden, dim)."""

    def __init__(self, dim: int, n_hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, n_hidden), nn.GELU(),
                                 nn.Linear(n_hidden, dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class AttentionResidual(nn.Module):
    """Given: x = attn(x) + x, then x = ffn(x) + x (the LayerNorm sits inside the FFN)."""

    def __init__(self, dim: int, attn_dim: int, mlp_dim: int, num_heads: int):
        super().__init__()
        self.attn = MultiHeadedAttention(dim, attn_dim, num_heads)
        self.ffn = FFN(dim, mlp_dim)

    def forward(self, x: Tensor, attn_mask: Optional[Tensor],
                kv_cache: Optional[list] = None) -> tuple[Tensor, Tensor]:
        attn_out, alphas = self.attn(x=x, attn_mask=attn_mask, kv_cache=kv_cache)
        x = attn_out + x
        x = self.ffn(x) + x
        return x, alphas


class KVCache:
    """Given: the keys and values of every position generated so far.

    `layers[l][h]` is the dict of layer l's head h ("k", "v": (B, P, attn_dim)); it starts
    empty and each forward pass with this cache appends its positions. `length` is P, the
    number of cached positions.
    """

    def __init__(self, num_layers: int, num_heads: int):
        self.layers = [[{} for _ in range(num_heads)] for _ in range(num_layers)]

    @property
    def length(self) -> int:
        first = self.layers[0][0]
        return first["k"].shape[1] if "k" in first else 0


class Transformer(nn.Module):
    """`num_layers` AttentionResidual blocks, in an nn.ModuleList named `layers`.

    Off limits here (library shortcuts that would do this part's work; using one costs its
    cases): `torch.nn.TransformerEncoderLayer`, `torch.nn.TransformerDecoderLayer`,
    `torch.nn.TransformerEncoder`, `torch.nn.TransformerDecoder`, `torch.nn.Transformer`.
    """

    def __init__(self, dim: int, attn_dim: int, mlp_dim: int, num_heads: int, num_layers: int):
        super().__init__()
        # TODO: num_layers residual blocks, registered under the name in the docstring.
        raise NotImplementedError("Transformer.__init__: not implemented yet")

    def forward(self, x: Tensor, attn_mask: Optional[Tensor], return_attn: bool = False,
                kv_cache: Optional[KVCache] = None) -> tuple[Tensor, Optional[Tensor]]:
        """x: (B, T, dim); attn_mask: None or (B, T, S), 1 = may attend, 0 = blocked.

        kv_cache: None or a KVCache (layer l uses kv_cache.layers[l]).
        Returns (out (B, T, dim), attns): attns is None unless return_attn, else the
        weights of every layer stacked on dim 1: (B, num_layers, num_heads, T, S).
        """
        # TODO: each block's output feeds the next; with return_attn every block's weights
        #       together make (B, num_layers, num_heads, T, T), else None.
        raise NotImplementedError("Transformer.forward: not implemented yet")


# ---------------------------------------------------------------------------------------
# Part 2. Tokenizer and data
# ---------------------------------------------------------------------------------------


class MyTokenizer:
    """A word tokenizer: the vocabulary is every distinct word of `raw_text` (sorted, as
    np.unique sorts them) after the specials <START>=0, <PAD>=1, <UNK>=2."""

    def __init__(self, raw_text: str):
        self.start, self.pad, self.unk = "<START>", "<PAD>", "<UNK>"
        words = [str(w) for w in np.unique(word_tokenize(raw_text))]
        self.vocab = [self.start, self.pad, self.unk] + words
        self.tok_to_id = {token: index for index, token in enumerate(self.vocab)}
        self.start_id, self.pad_id, self.unk_id = 0, 1, 2
        self.vocab_size = len(self.vocab)

    def encode(self, s: str) -> Tensor:
        """The start token's id followed by the id of each word of `s`
        (`word_tokenize(s)`); a word outside the vocabulary becomes <UNK>.
        Returns an int64 tensor of shape (1 + number of words,)."""
        # TODO: the start token, then one id per word of the word tokenizer (an unknown word
        #       gets <UNK>'s id), as an int64 tensor.
        raise NotImplementedError("MyTokenizer.encode: not implemented yet")

    def decode(self, toks: Tensor) -> str:
        """The tokens of the ids `toks` (1-D), joined with single spaces; <START> and
        the other specials are written out as they are ("<START> KING RICHARD ..."), so
        a padded row decodes with its <PAD> tokens ("<START> Ay , my lord . <PAD> <PAD>")."""
        # TODO: each id's token, joined by single spaces.
        raise NotImplementedError("MyTokenizer.decode: not implemented yet")

    def pad_examples(self, tok_list: list[Tensor]) -> Tensor:
        """Given: pad 1-D id tensors on the right with <PAD> into (B, longest)."""
        return pad_sequence(tok_list, batch_first=True, padding_value=self.pad_id)


class DialogueDataset(torch.utils.data.Dataset):
    """Given: item i is `tokenizer.encode(lines[i])`, cut to its first max_N ids."""

    def __init__(self, tokenizer: MyTokenizer, lines: list[str], max_N: int):
        self.tokenizer, self.lines, self.max_N = tokenizer, lines, max_N

    def __len__(self) -> int:
        return len(self.lines)

    def __getitem__(self, index: int) -> Tensor:
        return self.tokenizer.encode(self.lines[index])[:self.max_N]


def collate_fn(examples: list[Tensor], pad_id: int = 1) -> dict:
    """Given: a batch of 1-D id tensors -> {"input_ids": (B, longest) int64, padded with
    `pad_id` on the right, "input_mask": (B, longest) float, 1 for tokens, 0 for pads}.
    Use it as `DataLoader(..., collate_fn=functools.partial(collate_fn, pad_id=tok.pad_id))`."""
    lengths = torch.tensor([len(e) for e in examples])
    input_ids = pad_sequence(examples, batch_first=True, padding_value=pad_id)
    input_mask = (torch.arange(input_ids.shape[1])[None, :] < lengths[:, None]).float()
    return {"input_ids": input_ids, "input_mask": input_mask}


# ---------------------------------------------------------------------------------------
# Part 3. The language model and its loss
# ---------------------------------------------------------------------------------------


class DialogueGPT(nn.Module):
    """Token + position embeddings, the Transformer with a causal mask, and a head.

    Attribute names (the grader loads weights by name): `tok_embed` nn.Embedding(vocab_size,
    dim), `pos_embed` nn.Embedding(max_N, dim), `transformer`, `head`.

    Off limits here (library shortcuts that would do this part's work; using one costs its
    cases): `torch.nn.TransformerEncoderLayer`, `torch.nn.TransformerDecoderLayer`,
    `torch.nn.TransformerEncoder`, `torch.nn.TransformerDecoder`, `torch.nn.Transformer`.
    """

    def __init__(self, vocab_size: int, max_N: int, dim: int, attn_dim: int, mlp_dim: int,
                 num_heads: int, num_layers: int):
        super().__init__()
        self.max_N, self.num_heads, self.num_layers = max_N, num_heads, num_layers
        # TODO: two lookup tables: one vector per token id and one per position 0..max_N - 1
        #       (names in the docstring).
        raise NotImplementedError("DialogueGPT.__init__: not implemented yet")
        self.transformer = Transformer(dim, attn_dim, mlp_dim, num_heads, num_layers)
        self.head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, vocab_size))

    def new_cache(self) -> KVCache:
        """Given: an empty KV cache for this model."""
        return KVCache(self.num_layers, self.num_heads)

    def forward(self, input_ids: Tensor, return_attn: bool = False,
                kv_cache: Optional[KVCache] = None) -> tuple[Tensor, Optional[Tensor]]:
        """input_ids: (B, T) int64.

        Embeddings: tok_embed(input_ids) + pos_embed(positions). Without a cache the
        positions are 0..T-1; with a cache holding P earlier positions
        (`kv_cache.length`, read it before the transformer runs) they are P..P+T-1.
        The causal mask `causal_attn_mask` has shape (B, T, P + T) and is 1 where query i
        (at position P + i) may attend to key j, i.e. j <= P + i, and 0 elsewhere.
        Returns (logits (B, T, vocab_size), alphas (B, L, H, T, P + T) or None).
        """
        # TODO: with P cached positions the new tokens sit at positions P..P+T-1; query i may
        #       see every cached key and the new keys up to itself: a (B, T, P+T) mask.
        raise NotImplementedError("DialogueGPT.forward: not implemented yet")
        out, alphas = self.transformer(embs, attn_mask=causal_attn_mask,
                                       return_attn=return_attn, kv_cache=kv_cache)
        return self.head(out), alphas

    @torch.no_grad()
    def generate(self, input_ids: Tensor, num_tokens: int, temperature: float = 0.0,
                 top_k: Optional[int] = None, top_p: Optional[float] = None,
                 generator: Optional[torch.Generator] = None,
                 use_cache: bool = True) -> Tensor:
        """Continue every row of input_ids (B, T) by up to num_tokens tokens.

        Never grows past max_N: a prompt of T < max_N tokens gets min(num_tokens, max_N - T)
        new ones, so the result has min(T + num_tokens, max_N) columns; a prompt of max_N
        or more tokens is returned as it is (all T columns, none cut). Each step picks the
        next token of
        every row with sample_next_token(logits of the last position, temperature, top_k,
        top_p, generator); temperature 0 is greedy.
        use_cache=False runs the model on the whole sequence at every step. use_cache=True
        keeps a KV cache (self.new_cache()): the first step runs the whole prompt, every
        later step only the token just chosen. Both give the same tokens.
        Returns int64 (B, max(T, min(T + num_tokens, max_N))), the prompt included.
        """
        # TODO: never grow past max_N tokens; with a cache the prompt runs once, then each step
        #       feeds only the newest token.
        raise NotImplementedError("DialogueGPT.generate: not implemented yet")


class DialogueLoss(nn.Module):
    """Next-token cross-entropy over the real (unpadded) tokens of a batch."""

    def __init__(self):
        super().__init__()
        self.criterion = nn.CrossEntropyLoss(reduction="none")

    def forward(self, logits: Tensor, input_ids: Tensor, inp_mask: Tensor) -> Tensor:
        """logits (B, T, V), input_ids (B, T), inp_mask (B, T) (1 = token, 0 = pad).

        The logits at position t predict the token at t + 1: compare logits[:, :-1] with
        input_ids[:, 1:], weight each position's loss by inp_mask[:, 1:], and divide the
        sum by the sum of those weights. A scalar tensor in the dtype of the logits,
        differentiable with respect to them (it is the training loss: its gradient must be
        the one autograd gives for this formula).
        """
        # TODO: position t predicts token t + 1; per-token losses count only where that next
        #       token is real (the mask), averaged over those tokens.
        raise NotImplementedError("DialogueLoss.forward: not implemented yet")


# ---------------------------------------------------------------------------------------
# Part 4. Choosing the next token
# ---------------------------------------------------------------------------------------


def top_k_filter(logits: Tensor, k: int) -> Tensor:
    """Keep the k largest logits of each row (last dim), set the others to -inf.

    A logit equal to the row's k-th largest is kept too, so a row whose k-th largest value
    is tied keeps every one of the tied logits (more than k). logits: (..., V); k >= V keeps
    everything. Returns a new tensor of the same shape (`logits` itself is not changed).
    """
    # TODO: keep, in each row, the logits at least as large as its k-th largest; the others
    #       become -inf (k >= V keeps every one).
    raise NotImplementedError("top_k_filter: not implemented yet")


def top_p_filter(logits: Tensor, p: float) -> Tensor:
    """Nucleus filtering: keep the smallest set of most probable tokens of each row whose
    probabilities (softmax of the row) add up to at least p; set the others to -inf.

    The token whose probability carries the total across p is kept, so the most probable
    token always is. logits: (..., V); returns a new tensor of the same shape.
    """
    # TODO: in each row, in order of probability, keep tokens until their mass reaches p (the
    #       token that crosses p stays); the others become -inf, in the row's original order.
    raise NotImplementedError("top_p_filter: not implemented yet")


def sample_next_token(logits: Tensor, temperature: float = 1.0, top_k: Optional[int] = None,
                      top_p: Optional[float] = None,
                      generator: Optional[torch.Generator] = None) -> Tensor:
    """One token id per row of logits (B, V): returns int64 (B,).

    temperature == 0: greedy, the argmax of each row (top_k and top_p play no part).
    Otherwise, in this order: divide the logits by temperature, apply top_k_filter (if
    top_k is not None), then top_p_filter (if top_p is not None), take the softmax, and
    draw with exactly `torch.multinomial(probs, 1, generator=generator)` (the grader
    compares the drawn ids under a fixed generator).
    """
    # TODO: temperature 0 is greedy; otherwise the temperature-scaled, filtered logits define
    #       the distribution of one draw per row with the given generator: (B,).
    raise NotImplementedError("sample_next_token: not implemented yet")
