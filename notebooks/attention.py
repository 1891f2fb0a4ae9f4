# %% [markdown]
# # Attention: the building blocks of a Transformer
#
# This warm-up takes about an hour. You build, one piece at a time, the parts every Transformer
# is made of, and check each against exact expected values:
#
# 1. `PositionalEncoder`: the sinusoidal position table;
# 2. `attention(q, k, v)`: scaled dot-product attention for a whole batch, without loops;
# 3. `SelfAttention`, `CrossAttention` and `MultiHeadedAttention`;
# 4. `causal_attention` and `CausalSelfAttention`: the masked attention of a decoder;
# 5. a few written questions.
#
# You write your code in `assignments/attention.py`. Every tensor is **batch first**:
# `(N, L, D)` means N sequences of L positions with D features each.
#
# **How the checks work.** `check(A, "pe/")` runs the graded cases whose names start with
# `pe/` on the public inputs and prints one line per case: `PASS`, `FAIL` with what went wrong
# (often the name of a known mistake), or `TODO` while the function still raises
# `NotImplementedError`. Each float output is compared by its *scaled error*: the largest
# |yours − expected| divided by the largest |expected| in that output. The checks run in
# float64 (the grader converts your modules with `.double()`), so correct code is off by about
# 1e-16 and the tolerance is 1e-8; only the position table, which is float32 by design, gets
# 1e-3. `make grade A=attention` runs the same cases.
#
# `load_assignment` imports a fresh copy of your file each time it runs: after editing
# `assignments/attention.py`, re-run the setup cell below (no kernel restart needed).

# %%
import math

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from dlkit import load_assignment
from grader.check import check

A = load_assignment("attention")  # your module: A.attention, A.SelfAttention, ...

plt.rcParams["figure.dpi"] = 100
torch.set_printoptions(precision=4, sci_mode=False)
torch.set_num_threads(1)  # as the grader runs every case

# %% [markdown]
# ## Exercise 1. Positional encoding
#
# Attention by itself treats its input as a *set*: shuffle the positions and the outputs are
# shuffled the same way (you will check this in Exercise 3). To let a model use word order, we
# add to each embedding a vector that depends on its position. The original Transformer uses
# sines and cosines of geometrically spaced frequencies. For position `pos` and the pair of
# columns $(2i, 2i+1)$, $i = 0, 1, \dots, d_{model}/2 - 1$:
#
# $$PE(pos, 2i) = \sin\!\left(\frac{pos}{10000^{2i/d_{model}}}\right), \qquad
#   PE(pos, 2i+1) = \cos\!\left(\frac{pos}{10000^{2i/d_{model}}}\right).$$
#
# Both columns of a pair share one frequency; the wavelengths grow from $2\pi$ (columns 0 and 1)
# to almost $10000 \cdot 2\pi$ (the last pair).
#
# **A common trap.** Many blog posts write the loop as
# `for i in range(0, d_model, 2): pe[pos, i] = sin(pos / 10000 ** ((2 * i) / d_model))`
# and `pe[pos, i + 1] = cos(pos / 10000 ** ((2 * (i + 1)) / d_model))`. There `i` already steps
# over the even columns 0, 2, 4, ..., so it *is* the paper's $2i$; multiplying it by 2 again
# doubles the exponent, and the cosine column gets a frequency of its own. The source of this
# exercise printed its expected values from that code. We use the paper's formula: the numbers
# below were regenerated with it, and the blog version is a known mistake the checks name.
#
# Implement `PositionalEncoder.__init__`: build a `(max_seq_len, d_model)` table `pe` (two
# loops are fine; one vectorized line per column parity is the extra challenge). The given
# code stores it as a buffer of shape `(1, max_seq_len, d_model)`, and the given `forward`
# returns `x * sqrt(d_model) + pe[:, :L]`.

# %%
check(A, "pe/");

# %% [markdown]
# The source exercise's own printout, with the paper's formula: row 0 is position 0, where every
# sine is 0 and every cosine 1, so it reads `0.01 * sqrt(512) + (0, 1, 0, 1, ...)`. Expected:
# `[0.2263, 1.4525, 0.6788, 1.9051, 1.1314]`, then `[1.0677, 0.9929, 1.5007, 1.4748, 1.9333]`
# and `[115.9473, 115.1738, 116.3998, 115.6263, 116.8524]`. (The blog formula prints
# `[1.0677, 1.0222, 1.4808, 1.5285, 1.8931]` for the second row.)

# %%
pe = A.PositionalEncoder(512)
input_pe = (torch.arange(1, 513) * 0.01).repeat(1, 4, 1).float()
output_pe = pe(input_pe)
print(output_pe.shape, torch.equal(input_pe, output_pe))
print(input_pe[0, 0, :5], output_pe[0, 0, :5])
print(output_pe[0, 1, :5])
print(input_pe[0, 2, -5:], output_pe[0, 2, -5:])

# %% [markdown]
# The curves of a few columns over the first 16 positions (the source's plot): columns 1 and 2
# belong to the two fastest pairs, 7 and 8 to slower ones. Then the whole table of a
# `PositionalEncoder(64)` as an image: fast stripes on the left, slow ones on the right.

# %%
table = A.PositionalEncoder(64).pe[0]  # (80, 64)
positions = torch.arange(1, 17)
fig, (left, right) = plt.subplots(1, 2, figsize=(12, 3.5))
for column in (1, 2, 7, 8):
    left.plot(positions, table[positions, column], marker=".", label=f"column {column}")
left.set_xlabel("position")
left.set_ylabel("encoding")
left.legend()
image = right.imshow(table.T, aspect="auto", cmap="RdBu", vmin=-1, vmax=1)
right.set_xlabel("position")
right.set_ylabel("column")
fig.colorbar(image, ax=right)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Exercise 2. Scaled dot-product attention
#
# For queries $Q$ `(N, L_q, d_k)`, keys $K$ `(N, L_k, d_k)` and values $V$ `(N, L_k, d_v)`:
#
# $$\mathrm{Attention}(Q, K, V) = \mathrm{softmax}\!\left(\frac{Q K^\top}{\sqrt{d_k}}\right) V.$$
#
# The softmax runs over the **keys** (the last dimension of the `(N, L_q, L_k)` score matrix),
# so each query's weights sum to 1. Write `attention(q, k, v)` for the whole batch at once,
# without Python loops: `torch.bmm(q, k.transpose(-2, -1))` computes every score. It returns
# `(output, att_values)`: output `(N, L_q, d_v)` (the size of the *values*, not `d_k`) and the
# weights `(N, L_q, L_k)`. Note that `L_q` and `L_k` may differ, and so may `d_k` and `d_v`;
# the scale is always $\sqrt{d_k}$.
#
# The checks compare your function with `torch.nn.functional.scaled_dot_product_attention` on
# several shapes (including a batch of one and a single query) and check that every row of
# weights sums to 1.

# %%
check(A, "attention/");

# %% [markdown]
# The source's printout (do not change the seed). Expected first values of `output[0, 0]`:
# `[-1.3709, -0.6827, 0.3234, 0.8677, -0.1474, ...]`; of `output[-1, -1, -25:]`:
# `[-0.2094, 1.3784, 0.2855, -0.1716, 0.1597, ...]`.

# %%
torch.manual_seed(42)
q, k, v = torch.randn(2, 5, 512), torch.randn(2, 5, 512), torch.randn(2, 5, 256)
output, att_values = A.attention(q, k, v)
print(output.shape, att_values.shape)
print("rows sum to 1:", torch.allclose(att_values.sum(-1), torch.ones(2, 5)))
print(output[0, 0, :25])
print(output[-1, -1, -25:])
print("largest difference from torch:",
      (output - F.scaled_dot_product_attention(q, k, v)).abs().max().item())

# %% [markdown]
# What the weights look like: each row is one query, each column one key. Thanks to the
# $1/\sqrt{d_k}$ scale the scores of these random vectors have a spread of about 1, so each query
# spreads its weight over a few keys. Without the scale they would be spread
# $\sqrt{512} \approx 23$ times wider, and nearly every row would put all its weight on a single
# key (Question 2).

# %%
fig, axes = plt.subplots(1, 2, figsize=(8, 3.5))
for n, ax in enumerate(axes):
    image = ax.imshow(att_values[n], cmap="viridis", vmin=0, vmax=1)
    ax.set_title(f"sequence {n}")
    ax.set_xlabel("key position")
    ax.set_ylabel("query position")
fig.colorbar(image, ax=axes)
plt.show()

# %% [markdown]
# ## Exercise 3. Attention modules
#
# **Construction order is part of the contract.** The checks below (like the source exercise)
# build your module right after `torch.manual_seed(...)` and compare with fixed numbers, so
# the weights your `__init__` draws must be exactly the expected ones: create the layers in the
# order the docstring gives (`linear_q`, then `linear_k`, then `linear_v`), and nothing else
# that draws random numbers. Other checks load weights into your modules by name, so keep the
# attribute names too.
#
# **Task 1. `SelfAttention(input_dim, key_dim, output_dim)`.** Queries, keys and values are
# three linear projections of the same `x`; `forward(x)` returns only the output of
# `attention`, `(N, L, output_dim)`. `self.output_dim` is set for you.
#
# **Task 2. `CrossAttention(x_input_dim, y_input_dim, key_dim, output_dim)`.** Queries come from
# `x`, keys and values from another sequence `y`, as when a decoder reads the encoder's output.
# `forward(x, y)` returns one output per position of `x`, whatever the length of `y`.
#
# **Task 3. `MultiHeadedAttention(attn_modules, final_output_dim)`.** Keep the heads in an
# `nn.ModuleList` called `attn_modules` (a plain list would hide their weights from
# `.parameters()` and `state_dict()`), then create `linear_out`, one `nn.Linear` from the sum
# of the heads' `output_dim` to `final_output_dim`. `forward(x)` runs every head on `x`,
# concatenates the outputs along the feature dimension (head 0 first) and applies `linear_out`.
# Heads may have different sizes.

# %%
check(A, "selfattn/", "cross/", "mha/");

# %% [markdown]
# The source's printouts. Expected `output[0, 0, :5]` of the self-attention:
# `[0.0868, -0.0417, -0.2580, -0.0967, 0.0000]` (the last value is about 3.0e-05, and its
# last digits change with the machine: that is why the checks measure errors against the scale
# of the whole tensor), and `output[-1, -1, :10]`: `[0.1849, 0.3706, 0.1488, 0.0898, 0.2528,
# 0.4277, 0.4572, 0.1172, 0.0893, -0.2081]`. Shuffling the positions of `x` shuffles the
# outputs the same way: self-attention alone does not know about order.

# %%
torch.manual_seed(48)
self_attn = A.SelfAttention(512, 64, 512)
x = torch.randn(4, 10, 512)
output = self_attn(x)
print(x[0, 0, :5], output[0, 0, :5].detach(), output[-1, -1, :10].detach(), sep="\n")
perm = torch.randperm(10)
inverse = torch.empty_like(perm)
inverse[perm] = torch.arange(10)
print("equivariant:", torch.allclose(output, self_attn(x[:, perm])[:, inverse], atol=1e-6))

# %% [markdown]
# Cross-attention (expected `output[0, 0, :10]`: `[-0.1544, 0.0847, 0.2329, 0.0549, -0.1424,
# 0.0711, 0.0105, -0.2139, -0.0208, -0.1942]`), then eight heads of size 8 mixed into 32
# features (expected `[0.2290, -0.0350, 0.0918, -0.1069, -0.1679, -0.1939, -0.2167, 0.1841,
# 0.0546, 0.1668]`). The last line runs the cross-attention with a `y` of another length.

# %%
torch.manual_seed(14)
cross_attn = A.CrossAttention(512, 256, 64, 128)
x, y = torch.randn(3, 10, 512), torch.randn(3, 10, 256)
print(cross_attn(x, y)[0, 0, :10].detach())

torch.manual_seed(10)
heads = [A.SelfAttention(256, 128, 64 // 8) for _ in range(8)]
mha = A.MultiHeadedAttention(heads, 32)
x = torch.randn(3, 10, 256)
output = mha(x)
print(output.shape, output[0, 0, :10].detach())

print(cross_attn(torch.randn(2, 3, 512), torch.randn(2, 17, 256)).shape, "(2, 3, 128) expected")

# %% [markdown]
# ## Exercise 4. Causal attention
#
# A decoder that generates text one token at a time must not look at tokens it has not produced
# yet. In **causal** attention, query position $i$ may attend only to key positions $j \le i$:
# before the softmax, set the scores with $j > i$ (strictly above the diagonal) to $-\infty$, so
# their weights become exactly 0 and each row still sums to 1.
#
# Write `causal_attention(q, k, v)` (same shapes as `attention`, with one length `L` for queries
# and keys) and `CausalSelfAttention.forward` (it inherits the three layers of `SelfAttention`).
# The checks compare with `F.scaled_dot_product_attention(..., is_causal=True)`, require
# exactly zero weight on the future, and change the inputs after a position to confirm that the
# outputs up to that position do not move.

# %%
check(A, "causal/");

# %%
torch.manual_seed(0)
q, k, v = torch.randn(1, 8, 16), torch.randn(1, 8, 16), torch.randn(1, 8, 16)
_, plain = A.attention(q, k, v)
_, masked = A.causal_attention(q, k, v)
fig, axes = plt.subplots(1, 2, figsize=(8, 3.5))
for ax, weights, title in zip(axes, (plain, masked), ("attention", "causal_attention")):
    image = ax.imshow(weights[0], cmap="viridis", vmin=0, vmax=1)
    ax.set_title(title)
    ax.set_xlabel("key position")
    ax.set_ylabel("query position")
fig.colorbar(image, ax=axes)
plt.show()

# %% [markdown]
# When every check passes, run `make grade A=attention` in a terminal for your score.
#
# ## Written questions
#
# Answer briefly (a few sentences each) in the cells below.
#
# **Q1. Two formulas for the position table.** For `d_model = 512`, what is the wavelength
# (in positions) of the slowest pair of columns with the paper's formula, and what would it be
# with the blog formula's doubled exponent? Over the 80 positions of the table, what do the
# columns 256 to 511 look like in the blog version, and why is that a waste?

# %% [markdown]
# *Your answer:*
#

# %% [markdown]
# **Q2. Why divide by $\sqrt{d_k}$?** Suppose the entries of a query and a key are independent,
# with mean 0 and variance 1. What is the variance of their dot product? What happens to the
# softmax, and to its gradients, for $d_k = 512$ without the scale?

# %% [markdown]
# *Your answer:*
#

# %% [markdown]
# **Q3. Order.** The self-attention check shuffles the positions of `x` and un-shuffles the
# output. Why does that give the same result, and what does it say about a Transformer without
# positional encodings reading "dog bites man" and "man bites dog"? Which of your modules
# would *not* pass that check, and why?

# %% [markdown]
# *Your answer:*
#

# %% [markdown]
# **Q4. Masking with $-\infty$.** Why must the future scores be set to $-\infty$ rather than 0?
# And what would the first row of the weights become if the mask also hid the diagonal
# ($j \ge i$ instead of $j > i$)?

# %% [markdown]
# *Your answer:*
#

# %% [markdown]
# **Q5. Seeds and construction order.** The `*/source` checks only pass when your layers are
# created in the documented order. Explain why, in terms of the random number generator. The
# other checks load weights into your modules by name instead: what can each kind of check
# catch that the other cannot?

# %% [markdown]
# *Your answer:*
#
