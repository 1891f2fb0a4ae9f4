"""Transformer building blocks, one at a time: a warm-up for the `transformer` assignment.

You write, in order:

1. `PositionalEncoder`: the sinusoidal position table of "Attention Is All You Need";
2. `attention(q, k, v)`: scaled dot-product attention for a batch, without loops;
3. `SelfAttention`, `CrossAttention` and `MultiHeadedAttention`, modules built on `attention`;
4. `causal_attention` and `CausalSelfAttention`: the masked version a decoder uses.

Conventions used everywhere in this file:
- Batch first: a batch of sequences is (N, L, D): N sequences, L positions, D features.
- Work in the dtype of the inputs (the grader sends float64 tensors and calls `.double()` on
  your modules); never hard-code a device (no `.cuda()`).
- Construction order is part of the contract. The checks build your modules right after
  `torch.manual_seed(...)` and compare with fixed values, so every `__init__` must create its
  layers in the order its docstring gives, and nothing else that draws random numbers.

Run `make grade A=attention` to score this file; `notebooks/attention.ipynb` walks through it.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

# ---------------------------------------------------------------------------------------
# Exercise 1. Positional encoding
# ---------------------------------------------------------------------------------------


class PositionalEncoder(nn.Module):
    """Adds the sinusoidal position table to a batch of embeddings.

    For position `pos` and each pair of columns (2i, 2i+1), i = 0, 1, ..., d_model/2 - 1:

        pe[pos, 2i]     = sin(pos / 10000 ** (2i / d_model))
        pe[pos, 2i + 1] = cos(pos / 10000 ** (2i / d_model))

    Both columns of a pair share one frequency. Careful: in the exponent, 2i is the index of
    the pair's *even column* (0, 2, 4, ...), not twice the column index.

    Args:
        d_model: the embedding size (even).
        max_seq_len: the number of positions in the table.
    Attributes:
        pe: a buffer of shape (1, max_seq_len, d_model), float32 (torch's default dtype).
    """

    def __init__(self, d_model: int, max_seq_len: int = 80):
        super().__init__()
        self.d_model = d_model
        # BEGIN SOLUTION
        # HINT: a float32 table of max_seq_len rows and d_model columns: column pairs (2i, 2i+1)
        #       share one frequency, sine in the even column, cosine in the odd one; stored as
        #       (1, max_seq_len, d_model).
        position = torch.arange(max_seq_len, dtype=torch.float64)[:, None]  # (L, 1)
        even = torch.arange(0, d_model, 2, dtype=torch.float64)                # (d/2,)
        angle = position / 10000 ** (even / d_model)                           # (L, d/2)
        pe = torch.zeros(max_seq_len, d_model)
        pe[:, 0::2] = torch.sin(angle)
        pe[:, 1::2] = torch.cos(angle)
        # END SOLUTION
        self.register_buffer("pe", pe.unsqueeze(0))  # (1, L, d_model), moves with .to()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, L, d_model) with L <= max_seq_len. Returns x * sqrt(d_model) + pe[:, :L].

        (Given: the embeddings are scaled up so that the table does not drown them.)
        """
        x = x * math.sqrt(self.d_model)
        return x + self.pe[:, : x.size(1)]


# ---------------------------------------------------------------------------------------
# Exercise 2. Scaled dot-product attention
# ---------------------------------------------------------------------------------------


def attention(q: torch.Tensor, k: torch.Tensor,
              v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q k^T / sqrt(d_k)) v for a whole batch at once, without Python loops.

    Args:
        q: queries (N, L_q, d_k); k: keys (N, L_k, d_k); v: values (N, L_k, d_v).
            L_q and L_k may differ (cross-attention), and so may d_k and d_v.
    Returns:
        (output, att_values): output (N, L_q, d_v) and the attention weights
        att_values (N, L_q, L_k). The softmax runs over the keys (the last dimension), so
        every row att_values[n, i, :] sums to 1.

    Off limits here (library shortcuts that would do this part's work; using one costs its
    cases): `torch.nn.functional.scaled_dot_product_attention`,
    `torch.nn.MultiheadAttention`, `torch.nn.functional.multi_head_attention_forward`.
    """
    assert q.shape[-1] == k.shape[-1], "queries and keys must have the same size d_k"
    # BEGIN SOLUTION
    # HINT: every query meets every key in one batched product, (N, L_q, L_k), scaled by
    #       1/sqrt(d_k); normalise over the keys; the weights then mix the values into (N, L_q,
    #       d_v).
    scores = torch.bmm(q, k.transpose(-2, -1)) / math.sqrt(q.shape[-1])  # (N, L_q, L_k)
    att_values = torch.softmax(scores, dim=-1)
    return torch.bmm(att_values, v), att_values
    # END SOLUTION


# ---------------------------------------------------------------------------------------
# Exercise 3. Attention modules
# ---------------------------------------------------------------------------------------


class SelfAttention(nn.Module):
    """Self-attention: queries, keys and values are all projections of the same x.

    Create exactly three layers, in this order (the checks depend on it):
        linear_q = nn.Linear(input_dim, key_dim)
        linear_k = nn.Linear(input_dim, key_dim)
        linear_v = nn.Linear(input_dim, output_dim)
    `self.output_dim` (set for you) is how `MultiHeadedAttention` learns this head's size.
    """

    def __init__(self, input_dim: int, key_dim: int, output_dim: int):
        super().__init__()
        self.input_dim, self.key_dim, self.output_dim = input_dim, key_dim, output_dim
        # BEGIN SOLUTION
        # HINT: three linear projections of x: queries and keys of size key_dim, values of size
        #       output_dim (names and creation order in the docstring).
        self.linear_q = nn.Linear(input_dim, key_dim)
        self.linear_k = nn.Linear(input_dim, key_dim)
        self.linear_v = nn.Linear(input_dim, output_dim)
        # END SOLUTION

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, L, input_dim). Returns only the output of `attention`: (N, L, output_dim).

        Off limits here (library shortcuts that would do this part's work; using one costs
        its cases): `torch.nn.MultiheadAttention`,
        `torch.nn.functional.multi_head_attention_forward`.
        """
        # BEGIN SOLUTION
        # HINT: queries, keys and values all come from x (N, L, input_dim); attention gives
        #       (output, weights), and only the output is returned.
        output, _ = attention(self.linear_q(x), self.linear_k(x), self.linear_v(x))
        return output
        # END SOLUTION


class CrossAttention(nn.Module):
    """Cross-attention: queries come from x, keys and values from another sequence y.

    Create exactly three layers, in this order (the checks depend on it):
        linear_q = nn.Linear(x_input_dim, key_dim)
        linear_k = nn.Linear(y_input_dim, key_dim)
        linear_v = nn.Linear(y_input_dim, output_dim)
    """

    def __init__(self, x_input_dim: int, y_input_dim: int, key_dim: int, output_dim: int):
        super().__init__()
        self.key_dim, self.output_dim = key_dim, output_dim
        # BEGIN SOLUTION
        # HINT: as in SelfAttention, except that keys and values are projections of y, whose
        #       feature size differs from x's.
        self.linear_q = nn.Linear(x_input_dim, key_dim)
        self.linear_k = nn.Linear(y_input_dim, key_dim)
        self.linear_v = nn.Linear(y_input_dim, output_dim)
        # END SOLUTION

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x: (N, L_x, x_input_dim), y: (N, L_y, y_input_dim); L_x and L_y may differ.

        Returns (N, L_x, output_dim): one output per query position of x.

        Off limits here (library shortcuts that would do this part's work; using one costs
        its cases): `torch.nn.MultiheadAttention`,
        `torch.nn.functional.multi_head_attention_forward`.
        """
        # BEGIN SOLUTION
        # HINT: queries come from x (N, L_x, .), keys and values from y (N, L_y, .): the output
        #       has x's length.
        output, _ = attention(self.linear_q(x), self.linear_k(y), self.linear_v(y))
        return output
        # END SOLUTION


class MultiHeadedAttention(nn.Module):
    """Several self-attention heads side by side, mixed by one output layer.

    Args:
        attn_modules: the heads (e.g. SelfAttention modules), already built; each has an
            `output_dim` attribute, and heads may have different sizes.
        final_output_dim: the size of the result.
    Attributes (the names are part of the contract: the grader loads weights by name):
        attn_modules: the heads in an nn.ModuleList, in the order given.
        linear_out: nn.Linear(sum of the heads' output_dim, final_output_dim), the only layer
            this __init__ creates.
    """

    def __init__(self, attn_modules: list[nn.Module], final_output_dim: int):
        super().__init__()
        # BEGIN SOLUTION
        # HINT: keep the heads as registered submodules (their weights load by name) and one
        #       linear layer from the heads' joined width to final_output_dim.
        self.attn_modules = nn.ModuleList(attn_modules)
        total = sum(head.output_dim for head in self.attn_modules)
        self.linear_out = nn.Linear(total, final_output_dim)
        # END SOLUTION

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, L, input_dim) -> (N, L, final_output_dim).

        Run every head on x, concatenate their outputs along the feature dimension (head 0's
        features first), then apply linear_out.

        Off limits here (library shortcuts that would do this part's work; using one costs
        its cases): `torch.nn.MultiheadAttention`,
        `torch.nn.functional.multi_head_attention_forward`.
        """
        # BEGIN SOLUTION
        # HINT: every head sees the same x; join their outputs feature-wise, head 0 first, then
        #       map them to final_output_dim.
        outputs = [head(x) for head in self.attn_modules]  # each (N, L, output_dim of head)
        return self.linear_out(torch.cat(outputs, dim=-1))
        # END SOLUTION


# ---------------------------------------------------------------------------------------
# Exercise 4. Causal (masked) attention, for a decoder
# ---------------------------------------------------------------------------------------


def causal_attention(q: torch.Tensor, k: torch.Tensor,
                     v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Like `attention`, but query position i may only attend to key positions j <= i.

    Args:
        q: (N, L, d_k); k: (N, L, d_k); v: (N, L, d_v), all of the same length L.
    Returns:
        (output (N, L, d_v), att_values (N, L, L)): att_values[n, i, j] is exactly 0 for
        every j > i, and every row still sums to 1.

    Off limits here (library shortcuts that would do this part's work; using one costs its
    cases): `torch.nn.functional.scaled_dot_product_attention`,
    `torch.nn.MultiheadAttention`, `torch.nn.functional.multi_head_attention_forward`.
    """
    # BEGIN SOLUTION
    # HINT: keys after the query (j > i) must end with weight exactly 0: deal with their scores
    #       before normalising.
    scores = torch.bmm(q, k.transpose(-2, -1)) / math.sqrt(q.shape[-1])  # (N, L, L)
    L = q.shape[1]
    future = torch.ones(L, L, dtype=torch.bool, device=q.device).triu(1)  # True where j > i
    att_values = torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1)
    return torch.bmm(att_values, v), att_values
    # END SOLUTION


class CausalSelfAttention(SelfAttention):
    """Self-attention in which position i only sees positions j <= i.

    The same three layers as SelfAttention (inherited, same order); only forward differs.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, L, input_dim) -> (N, L, output_dim); output i depends on x[:, :i+1] only.

        Off limits here (library shortcuts that would do this part's work; using one costs
        its cases): `torch.nn.MultiheadAttention`,
        `torch.nn.functional.multi_head_attention_forward`.
        """
        # BEGIN SOLUTION
        # HINT: the projections of SelfAttention; only the attention becomes the causal one.
        output, _ = causal_attention(self.linear_q(x), self.linear_k(x), self.linear_v(x))
        return output
        # END SOLUTION
