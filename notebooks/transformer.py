# %% [markdown]
# # Transformer: from attention to a model that does arithmetic
#
# In this assignment you write a complete encoder-decoder Transformer from scratch and train it
# to add and subtract integers, for example
#
# `BOS NEGATIVE 30 subtract NEGATIVE 34 EOS` → `BOS POSITIVE 004 EOS`.
#
# You write your code in `assignments/transformer.py`; this notebook explains each part, checks
# it as you go, and at the end trains the model and looks inside it. The parts, in order:
#
# 1. vocabulary and tokenization;
# 2. scaled dot-product attention: loops, no loops, then padding and causal masks;
# 3. multi-head attention;
# 4. layer norm, the feed-forward block, position encodings;
# 5. encoder and decoder layers;
# 6. the full model and greedy decoding;
# 7. training, predictions and attention maps;
# 8. part two: the same model summarizes real text;
# 9. written questions.
#
# **How the checks work.** A cell such as `check(transformer, "attention/")` runs the graded
# cases whose names start with `attention/` on a public set of inputs and prints one line per
# case: `PASS`, `FAIL` with a hint, or `TODO` when the function still raises
# `NotImplementedError`. `make grade` runs the same cases on the same public inputs, plus one
# training case that retrains your model from scratch; the course's autograder (where you upload
# your submission) runs the same cases on other inputs, whose expected values only it has.
#
# The numeric checks run in **float64** (double precision), so that rounding never decides a
# verdict: a check compares the *scaled error*, the largest |yours - expected| divided by the
# largest |expected| of that output. Create new tensors with the dtype and device of your
# inputs (`torch.zeros_like(x)`, `x.new_zeros(...)`, `dtype=query.dtype`); a tensor made with
# the default dtype is float32 and will not mix with float64 ones. Batches of one are checked
# too: avoid a bare `.squeeze()`, which also drops a batch dimension of size 1.
#
# `load_assignment` imports a fresh copy of your file every time it runs, so after editing
# `assignments/transformer.py`, re-run the setup cell below (no kernel restart needed).
#
# **Time.** The notebook runs torch on one thread, as the grader's training cases do (models
# this small gain nothing from a second thread, and on a busy laptop threads wait for each
# other). Training cells print their estimate in CPU-seconds on one thread: a busy machine
# takes longer on the clock, but not more CPU time. Cells that print no estimate take a few
# seconds.

# %%
import os
import time

import matplotlib.pyplot as plt
import torch

from dlkit import arith, load_assignment, pick_device, seed_everything
from dlkit.progress import estimate, tqdm
from dlkit.train import exact_match, predict_in_batches, train_seq2seq
from grader.check import check

transformer = load_assignment("transformer")

plt.rcParams["figure.dpi"] = 100
torch.set_printoptions(precision=3, sci_mode=False)
seed_everything(0)
torch.set_num_threads(1)  # the grader's setting for training

# %% [markdown]
# ## Part 1. Vocabulary and tokenization
#
# The data set holds every problem `a + b` and `a - b` with integers $|a|, |b| \le 50$. Each
# problem is written as text: a sign word and two zero-padded digits per operand, the
# operator word, and `BOS`/`EOS` around it. The answer has three digits, because
# `50 + 50 = 100` does not fit in two.
#
# The vocabulary has 17 tokens: the digits `"0"`…`"9"` first (so digit *d* gets id *d*),
# then `POSITIVE NEGATIVE add subtract BOS EOS PAD`. It is defined for you as
# `transformer.VOCAB`, and `transformer.SPECIAL_TOKENS` lists the non-digit tokens.
#
# Implement:
#
# * `generate_token_dict(vocab)`: a dict that maps the *i*-th token of the list to *i*.
# * `preprocess_input_sequence(expression, token_dict, special_tokens)`: split the string on
#   whitespace; a special word becomes its own id, and any other word is a number, which becomes
#   **one id per digit**. So `"BOS POSITIVE 04 EOS"` becomes `[BOS, POSITIVE, 0, 4, EOS]`,
#   five ids.

# %%
check(transformer, "tokens/");

# %% [markdown]
# ### A look at the data
#
# `arith.split_problems()` gives a fixed 90/10 split of all 20,402 problems into training and
# held-out problems. Every expression becomes 9 ids. For the answer, the label is the answer's
# ids *without* its `BOS`: `[sign, digit, digit, digit, EOS]`, 5 ids. (The decoder gets its
# start token in Part 6.)

# %%
token_dict = transformer.generate_token_dict(transformer.VOCAB)
id_to_token = {i: t for t, i in token_dict.items()}
PAD_ID, EOS_ID = token_dict["PAD"], token_dict["EOS"]


def tokenize(text):
    return transformer.preprocess_input_sequence(text, token_dict, transformer.SPECIAL_TOKENS)


def to_text(ids, compact=False):
    """Token ids back to tokens, separated by spaces.

    compact=True reads like the original text: digits of one number are joined again and
    everything after the first EOS is dropped.
    """
    words = []
    for i in ids:
        word = id_to_token.get(int(i), f"<{int(i)}>")
        if compact and word.isdigit() and words and words[-1].isdigit():
            words[-1] += word
        else:
            words.append(word)
        if compact and int(i) == EOS_ID:
            break
    return " ".join(words)


train_problems, test_problems = arith.split_problems()
print(f"{len(train_problems)} training problems, {len(test_problems)} held out\n")
for problem in train_problems[:4]:
    question, answer = arith.expression_text(*problem), arith.answer_text(*problem)
    print(f"{question}  ->  {answer}")
    print(f"    input ids {tokenize(question)}")
    print(f"    labels    {tokenize(answer)[1:]}\n")

train_ids, train_labels = arith.encode_problems(train_problems, tokenize)
test_ids, test_labels = arith.encode_problems(test_problems, tokenize)
print("train:", tuple(train_ids.shape), tuple(train_labels.shape),
      "| held out:", tuple(test_ids.shape), tuple(test_labels.shape))

# %% [markdown]
# ## Part 2. Scaled dot-product attention
#
# For queries $Q$, keys $K$ and values $V$ with feature size $M$:
#
# $$\mathrm{Attention}(Q, K, V) = \mathrm{softmax}\!\left(\frac{Q K^\top}{\sqrt{M}}\right) V,$$
#
# where the softmax runs over the **keys** (the last dimension of the score matrix), so every
# row of weights sums to 1. Write it three times, from slow and explicit to fast:
#
# * `scaled_dot_product_two_loop_single(query, key, value)`: inputs `(K, M)`; two Python loops
#   over query rows *i* and key rows *j* fill the score matrix one dot product at a time.
# * `scaled_dot_product_two_loop_batch`: the same with a batch dimension, `(N, K, M)`; each
#   loop step now computes `N` scores at once.
# * `scaled_dot_product_no_loop_batch`: no loops at all (`torch.bmm` or `torch.einsum`). Here
#   queries and keys may have different lengths: query `(N, K, M)`, key `(N, S, M)`, value
#   `(N, S, D)`. It returns **a pair** `(output (N, K, D), weights (N, K, S))`; we use the
#   weights later to draw attention maps.

# %%
check(transformer, "attention/two_loop_single", "attention/two_loop_batch",
      "attention/no_loop_batch");

# %% [markdown]
# Why bother with the vectorized version? The loops launch one tiny operation per (i, j)
# pair, so their cost grows with the square of the length, and every step pays Python's
# overhead. Compare the two batched versions:

# %%
q = torch.randn(8, 64, 32)
for name in ("scaled_dot_product_two_loop_batch", "scaled_dot_product_no_loop_batch"):
    started = time.perf_counter()
    getattr(transformer, name)(q, q, q)
    print(f"{name:36s} {1000 * (time.perf_counter() - started):8.2f} ms")

# %% [markdown]
# ### Masks
#
# Now write the version the model uses, `scaled_dot_product_attention(q, k, v,
# key_padding_mask=None, causal=False)`. Shapes: `q` is `(n, T, d_head)`, `k` and `v` are
# `(n, S, d_head)`, where `n` will be batch × heads. It returns only the output
# `(n, T, d_head)`. It adds two masks:
#
# * **`key_padding_mask`**, shape `(n, S)`: **1 (True) marks a PAD key**, which must get
#   exactly zero weight. Set those scores to `-inf` before the softmax (`masked_fill`). The mask
#   may arrive as `bool`, `uint8` or `int64`; convert it with `.bool()` first, because
#   `masked_fill` only takes boolean masks.
# * **`causal=True`**: query position *i* may attend to key positions **j ≤ i** only. Mask the
#   strict upper triangle of the `(T, S)` score matrix. The decoder needs this: when it learns to
#   predict token *t*, it must not see tokens *t* and later.
#
# Compute the softmax in **at least float32**: upcast float16 or bfloat16 scores to float32,
# keep float32 and float64 as they are (`torch.promote_types(scores.dtype, torch.float32)`),
# and cast the weights back to the dtype of `v`. This costs nothing here and keeps
# half-precision training stable (see the written questions). (Always calling `.float()` is
# also accepted: on float64 inputs it changes the output by about 1e-7 of its scale, far below
# the tolerance.)
#
# The checks go beyond comparing numbers: one changes the keys and values at padded positions to
# huge random values, and another changes every key and value *after* some position. A correct
# implementation gives exactly the same outputs in both cases.

# %%
check(transformer, "attention/vectorized", "attention/key_padding_mask", "attention/causal");

# %% [markdown]
# A quick way to *see* the weights of your masked attention: if the values are the identity
# matrix, each output row **is** that query's weight row. Below, the last key is padding and the
# mask is causal, so the weights must be lower-triangular with an empty last column.

# %%
seed_everything(1)
S = 5
q, k = torch.randn(1, S, 4), torch.randn(1, S, 4)
identity = torch.eye(S)[None]
pad = torch.tensor([[0, 0, 0, 0, 1]])  # 1 = pad
print(transformer.scaled_dot_product_attention(q, k, identity, key_padding_mask=pad, causal=True)[0])

# %% [markdown]
# ## Part 3. Multi-head attention
#
# `MultiheadAttention(d_model, n_heads)` owns four `nn.Linear(d_model, d_model)` layers,
# `q_proj`, `k_proj`, `v_proj` and `o_proj` (created for you). In `forward(q, k, v,
# key_padding_mask=None, causal=False)` with `q` of shape `(B, T, d_model)` and `k`, `v` of shape
# `(B, S, d_model)`:
#
# 1. project `q`, `k` and `v`;
# 2. split the channels into heads: `(B, T, d_model)` → `(B, T, H, d_head)` → `(B, H, T, d_head)`
#    → `(B·H, T, d_head)`. Head *h* owns channels `h·d_head … (h+1)·d_head − 1`, the same
#    layout as `torch.nn.MultiheadAttention`, which is what lets the check copy weights over;
# 3. the padding mask is `(B, S)`; the attention function needs one row per (batch, head) pair,
#    in the same order as step 2 (batch-major: `repeat_interleave` over dim 0);
# 4. call your `scaled_dot_product_attention`, undo the reshape to `(B, T, d_model)` and apply
#    `o_proj`.
#
# The checks compare you to `torch.nn.MultiheadAttention` with the same weights: self-attention,
# cross-attention with `T != S`, padding together with the causal flag, and other sizes (3 heads
# of width 8 on a batch of one, 8 heads of width 4): use `self.n_heads` and `self.d_head`,
# never a number.

# %%
check(transformer, "mha/");

# %% [markdown]
# ## Part 4. Layer norm, feed-forward block, positions
#
# * `LayerNorm(d_model, eps=1e-5)`: normalize each vector over its **last** dimension with the
#   mean and the *population* variance (divide by `d_model`, not `d_model - 1`:
#   `unbiased=False`), then scale by `weight` and shift by `bias`. This matches `nn.LayerNorm`.
#   `eps` goes inside the square root, $\sqrt{\mathrm{var} + \epsilon}$: the check has rows
#   whose variance is smaller than `eps`, where that matters.
# * `FeedForward(d_model, d_ffn)`: `fc2(relu(fc1(x)))`, applied to every position
#   independently.
# * `sinusoidal_positions(num_positions, d_model)`: the encoding from *Attention Is All You
#   Need*. Column pair `(2i, 2i+1)` holds $\sin(p\,\omega_i)$ and $\cos(p\,\omega_i)$ with
#   $\omega_i = 1/10000^{2i/d_\text{model}}$. With an odd `d_model` the last column is a sine.
# * `Transformer.make_positions(input_ids, padding_mask)`: our model actually *learns* its
#   position vectors (`emb_pos`, an `nn.Embedding`), and this method returns the indices to
#   look up: `0, 1, …, L-1` in every row, with the same shape, dtype and device as `input_ids`.
#   (Padding sits at the end of our sequences, so PAD positions can keep their index.)

# %%
check(transformer, "layernorm/", "ffn/", "positions/");

# %% [markdown]
# On the left is the sinusoidal encoding: each row is a position, and each column oscillates
# with its own frequency, from fast on the left to very slow on the right. On the right is the
# dot product between two positions' encodings: it depends mostly on how far apart the
# positions are, which is what lets attention pick up *relative* offsets.

# %%
pe = transformer.sinusoidal_positions(50, 64)
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
image = ax1.imshow(pe, cmap="RdBu", aspect="auto")
ax1.set(title="sinusoidal_positions(50, 64)", xlabel="dimension", ylabel="position")
fig.colorbar(image, ax=ax1)
image = ax2.imshow(pe @ pe.T, cmap="viridis")
ax2.set(title="PE[p] · PE[q]", xlabel="position q", ylabel="position p")
fig.colorbar(image, ax=ax2)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Part 5. Encoder and decoder layers
#
# `TransformerLayer(is_decoder, d_model, n_heads, d_ffn, p_drop)` is one **post-LN** layer, as
# in the original paper: every sublayer is wrapped as
#
# $$x \leftarrow \mathrm{LN}\big(x + \mathrm{Dropout}(\mathrm{sublayer}(x))\big).$$
#
# The sublayers, in order:
#
# 1. self-attention `self_attn(x, x, x, padding_mask, causal=is_decoder)`, normalized by
#    `self_attn_ln`. Only the decoder's self-attention is causal;
# 2. decoder only: cross-attention, with queries from `x` and keys and values from
#    `encoder_out`, masked with `encoder_padding_mask` (never causal: the whole input is known),
#    normalized by `cross_attn_ln`;
# 3. the feed-forward block, normalized by `ffn_ln`.
#
# The checks copy weights from `nn.TransformerEncoderLayer` and `nn.TransformerDecoderLayer`
# (post-LN is their default). The decoder check also changes the inputs after some position and
# demands that the outputs before it do not move. A decoder that forgets `causal=True` fails
# here, with a message that says so.

# %%
check(transformer, "layer/");

# %% [markdown]
# ## Part 6. The encoder-decoder model and greedy decoding
#
# `Transformer` is mostly built for you: the shared word embedding `emb_word`, the learned
# positions `emb_pos`, `emb_ln`, and `embed(ids)`, which returns `emb_ln(word + position)`
# together with the padding mask `ids == PAD`. The output layer `lm_head` is **tied** to the
# embedding: `lm_head.weight` *is* `emb_word.weight`, one matrix used twice. Implement:
#
# * `encode(input_ids)` → `(encoder_out, encoder_padding_mask)`: embed, then run every encoder
#   layer;
# * `decode(decoder_input_ids, encoder_out, encoder_padding_mask)` → logits `(B, T, n_words)`:
#   embed, then run every decoder layer, then `lm_head`;
# * `shift_right(labels)`: the decoder input for *teacher forcing*. Position *t* must predict
#   label *t* from the labels **before** it, so the input is the labels shifted one step to the
#   right, with **EOS as the first token** (this model, like BART, uses EOS as its start
#   token) and any `-100` replaced by PAD;
# * `forward(input_ids, labels)` → `(logits, loss)`: encode, decode the shifted labels, and take
#   the mean cross-entropy where **labels equal to -100 are ignored**
#   (`ignore_index=-100`; the arithmetic labels never use it, but batches of texts with
#   different lengths do);
# * `greedy_decode(model, input_ids, max_new_tokens)`: encode once, start every row from
#   `[EOS]`, and repeatedly append the argmax of the last position's logits. Once a row has
#   produced EOS it produces PAD. Return the new tokens only, `(B, max_new_tokens)`.

# %%
check(transformer, "model/");

# %% [markdown]
# Here is what teacher forcing feeds the decoder for two training answers:

# %%
demo = transformer.Transformer(len(transformer.VOCAB), PAD_ID, EOS_ID, max_len=16, n_layers=1,
                               d_model=32, n_heads=4, d_ffn=64, p_drop=0.0)
for row in demo.shift_right(train_labels[:2]):
    print("decoder input:", to_text(row))
for row in train_labels[:2]:
    print("labels       :", to_text(row))
print("lm_head shares its weight with emb_word:", demo.lm_head.weight is demo.emb_word.weight)

# %% [markdown]
# Every graded case that runs inline, in one go: all of them should pass before you train.

# %%
all_passed = check(transformer)

# %% [markdown]
# ## Part 7. Training on the arithmetic task
#
# We train with `dlkit.train.train_seq2seq` (AdamW, warm-up then cosine decay, gradient
# clipping) using the same settings as the autograder's training case, `CPU_PROFILE`: a
# 2-layer model with `d_model = 64`, 1000 steps of 128 problems, on one thread. The graded case trains your `Transformer` with your code for exactly
# these 1000 steps, on the training problems only; then the course's reference code loads the
# trained weights (so the parameter names must be the assignment's) and answers held-out
# problems with its own `greedy_decode`. It expects at least `MIN_ACCURACY` exact-match
# accuracy: all five answer tokens must be right.
#
# Set the environment variable `DLCOURSE_QUICK=1` to run a tiny version instead (a few seconds;
# the course's own tests use it). Its accuracy is meaningless.

# %%
from grader.suites.transformer import CPU_PROFILE, MIN_ACCURACY

QUICK = bool(os.environ.get("DLCOURSE_QUICK"))
estimate(2 if QUICK else 50)
if QUICK:
    profile = dict(model=dict(max_len=16, n_layers=1, d_model=32, n_heads=4, d_ffn=64,
                              p_drop=0.0), steps=60, batch_size=64, lr=2e-3)
else:
    profile = CPU_PROFILE
device = pick_device("auto")
print("quick mode" if QUICK else "full CPU profile", "on", device, "|", profile)

seed_everything(0)
model = transformer.Transformer(len(transformer.VOCAB), PAD_ID, EOS_ID, **profile["model"])
print(f"{sum(p.numel() for p in model.parameters()):,} parameters")

started = time.perf_counter()
losses = train_seq2seq(model, train_ids, train_labels, steps=profile["steps"],
                       batch_size=profile["batch_size"], lr=profile["lr"],
                       warmup=min(100, profile["steps"] // 10), device=device)
print(f"trained in {time.perf_counter() - started:.0f} s on the clock, "
      f"final loss {losses[-1]:.4f}")

# %%
predictions = predict_in_batches(lambda ids: transformer.greedy_decode(model, ids, test_labels.shape[1]),
                                 test_ids, device=device)
accuracy = exact_match(predictions, test_labels)
print(f"held-out exact match: {accuracy:.3f} on {len(test_ids)} problems "
      f"(the autograder asks for {MIN_ACCURACY:.2f})")
if QUICK:
    print("quick mode: far too short a run to reach it; unset DLCOURSE_QUICK for the real one")
elif accuracy >= MIN_ACCURACY:
    print("threshold reached")
else:
    print("below the threshold: re-run the checks above, then look at the loss curve")

# %% [markdown]
# The training loss per step (log scale). A loss that drops to nearly zero within a few dozen
# steps would be suspicious: it usually means the decoder can see the answer it must predict.

# %%
window = max(1, len(losses) // 50)
smooth = torch.tensor(losses).unfold(0, window, 1).mean(1) if len(losses) >= window else None
fig, ax = plt.subplots(figsize=(7, 3.5))
ax.plot(losses, alpha=0.35, label="per step")
if smooth is not None:
    ax.plot(range(window - 1, len(losses)), smooth, label=f"mean of {window} steps")
ax.set(yscale="log", xlabel="step", ylabel="cross-entropy", title="training loss")
ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ### Predictions
#
# A few held-out problems with the model's answer next to the correct one, then some of its
# mistakes, if any. Are the errors spread evenly, or are some digits harder than others?

# %%
model = model.cpu().eval()
correct = predictions.eq(test_labels).all(dim=1)


def show(i):
    mark = "✓" if correct[i] else "✗"
    print(f"{mark} {to_text(test_ids[i], compact=True):40s} model: "
          f"{to_text(predictions[i], compact=True):18s} answer: {to_text(test_labels[i], compact=True)}")


for i in range(8):
    show(i)
wrong = (~correct).nonzero().flatten().tolist()
print(f"\n{len(wrong)} wrong answers out of {len(correct)}" + ("; the first few:" if wrong else ""))
for i in wrong[:5]:
    show(i)

custom = "BOS POSITIVE 02 subtract POSITIVE 15 EOS"
answer = transformer.greedy_decode(model, torch.tensor([tokenize(custom)]), 5)[0]
print(f"\nyour own problem: {custom}  ->  {to_text(answer, compact=True)}")

# %% [markdown]
# ### Attention maps
#
# Which input tokens does the model look at? Forward hooks record the inputs of every
# `MultiheadAttention` module during one forward pass. We then recompute each head's weights
# with the layer's own `q_proj` and `k_proj` and your `scaled_dot_product_no_loop_batch`. Our
# inputs contain no padding, and the encoder and the cross-attention are not causal, so no mask
# is needed here.
#
# The top row shows the first encoder layer's self-attention. The bottom row shows the last
# decoder layer's cross-attention: row *t* is the decoder position that predicts the *t*-th
# answer token, so you can see which digits of the operands it reads to produce each digit of
# the result.

# %%
def record_attention_inputs(model, input_ids, decoder_input_ids):
    """{module name: (query input, key input)} for every MultiheadAttention in one pass."""
    seen, hooks = {}, []
    for name, module in model.named_modules():
        if isinstance(module, transformer.MultiheadAttention):
            def hook(module, args, kwargs, output, name=name):
                query = args[0] if len(args) > 0 else kwargs["q"]
                key = args[1] if len(args) > 1 else kwargs["k"]
                seen[name] = (query.detach(), key.detach())
            hooks.append(module.register_forward_hook(hook, with_kwargs=True))
    try:
        with torch.no_grad():
            encoder_out, encoder_mask = model.encode(input_ids)
            model.decode(decoder_input_ids, encoder_out, encoder_mask)
    finally:
        for handle in hooks:
            handle.remove()
    return seen


def head_weights(mha, query, key):
    """Attention weights (H, T, S) of one example, recomputed from the layer's projections."""
    (T, _), (S, _) = query.shape[1:], key.shape[1:]
    H, d = mha.n_heads, mha.d_head
    with torch.no_grad():
        qh = mha.q_proj(query).view(1, T, H, d).transpose(1, 2).reshape(H, T, d)
        kh = mha.k_proj(key).view(1, S, H, d).transpose(1, 2).reshape(H, S, d)
        _, weights = transformer.scaled_dot_product_no_loop_batch(qh, kh, kh)
    return weights


example = 0
source = test_ids[example:example + 1]
answer_ids = predictions[example:example + 1]
decoder_input = model.shift_right(answer_ids)
seen = record_attention_inputs(model, source, decoder_input)

n_layers = len(model.encoder_layers)
source_words = to_text(source[0]).split()
answer_words = to_text(answer_ids[0]).split()
panels = [("encoder layer 1, self-attention", "encoder_layers.0.self_attn", source_words, source_words),
          (f"decoder layer {n_layers}, cross-attention", f"decoder_layers.{n_layers - 1}.cross_attn",
           [f"→ {w}" for w in answer_words], source_words)]
n_heads = model.encoder_layers[0].self_attn.n_heads
fig, axes = plt.subplots(2, n_heads, figsize=(3.2 * n_heads, 6.8), squeeze=False)
for row, (title, name, rows, cols) in enumerate(panels):
    mha = model.get_submodule(name)
    weights = head_weights(mha, *seen[name])
    for h in range(n_heads):
        ax = axes[row, h]
        ax.imshow(weights[h], cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(len(cols)), cols, rotation=90, fontsize=8)
        ax.set_yticks(range(len(rows)), rows if h == 0 else [""] * len(rows), fontsize=8)
        ax.set_title(f"{title}\nhead {h}" if h == 0 else f"head {h}", fontsize=9)
fig.suptitle(f"{to_text(source[0], compact=True)}  →  {to_text(answer_ids[0], compact=True)}")
plt.tight_layout()
plt.show()

# %% [markdown]
# Try a few other examples (change `example`), and compare the heads: some specialise on the
# operator, some on digits in the same place value, some on the signs.

# %% [markdown]
# ## Part 8. Part two: summarizing real text
#
# The model you built only ever saw arithmetic. Now the same `Transformer` class learns a real
# task, abstractive summarization: read a document, write its one-line summary. The source
# homework trains it on XSum (BBC articles and their one-sentence summaries) with the t5-small
# tokenizer; neither can be downloaded here, so the CPU version uses text that is on every
# machine with this course installed: the **docstrings of numpy and torch**. The first line
# of a docstring summarises the rest, for example
#
# *document*: "Parameters ---------- a : array_like Input array. axis : int, optional Axis
# along which the cumulative sum is computed..." → *summary*: "Return the cumulative sum of
# the elements along a given axis."
#
# `dlkit.summarize` collects about 2,300 such pairs from the pinned numpy 2.4.6 and torch
# 2.13.0, splits them by a stable hash of the summary (about 10% for validation) and trains a
# SentencePiece unigram tokenizer on the training split with T5's ids (pad 0, eos 1, unk 2);
# it is cached in `data/summarize/` and rebuilt the same way when missing (a few seconds).
# The source's own setting (XSum, t5-small's tokenizer, documents cut at 1,024 tokens and
# summaries at 128, two epochs on a GPU) is real code in the same module, at the end.
#
# You write four functions, the last part of `assignments/transformer.py` (its Part 7):
#
# - `collate_summaries`: one padded batch. Documents are padded with `pad_id`; the labels
#   (the summaries, each ending with EOS) with **-100**, the value `F.cross_entropy` ignores;
#   the decoder input is the labels shifted right behind the start token (EOS for this model,
#   as in part one), with -100 fed as PAD.
# - `masked_token_loss`: the mean cross-entropy over the real target tokens only.
# - `greedy_summarize`: greedy decoding that stops as soon as every row has produced EOS.
# - `train_summarizer`: teacher forcing. Each step feeds the whole shifted summary to the
#   decoder at once, and the causal mask makes position t predict token t from tokens < t.

# %%
check(transformer, "summarize/");

# %% [markdown]
# The corpus and the tokenizer. The documents are cut at `max_source_len` tokens and the
# summaries at `max_target_len`, EOS included; the table shows how much of them that keeps.

# %%
from dlkit import summarize
from grader.suites.transformer import MAX_SUMMARY_LOSS, SUMMARIZE, summarize_loss

corpus = summarize.docstring_corpus()
splits = summarize.corpus_splits(corpus)
tokenizer = summarize.load_tokenizer(corpus=corpus)
print(f"{len(corpus)} pairs: {len(splits['train'])} training, {len(splits['validation'])} "
      f"validation; vocabulary {tokenizer.get_piece_size()}, pad {tokenizer.pad_id()}, "
      f"eos {tokenizer.eos_id()}, unk {tokenizer.unk_id()}")
example_pair = splits["validation"][3]
print(example_pair["name"], "|", example_pair["summary"])
print(tokenizer.encode(example_pair["summary"], out_type=str))
lengths = {k: [len(ids) for ids in tokenizer.encode([p[k] for p in splits["train"]])]
           for k in ("document", "summary")}
for k, plural, cut in (("document", "documents", SUMMARIZE["max_source_len"]),
                       ("summary", "summaries", SUMMARIZE["max_target_len"])):
    kept = sum(n < cut for n in lengths[k]) / len(lengths[k])
    print(f"{plural}: median {sorted(lengths[k])[len(lengths[k]) // 2]} tokens; "
          f"{kept:.0%} fit in {cut} (EOS included) without being cut")

# %% [markdown]
# Training. `SUMMARIZE` holds the graded case's settings: a 2-layer model with `d_model = 64`,
# documents cut at 64 tokens, 500 steps of 32 pairs, on one thread. The graded
# case runs your `train_summarizer` on your `Transformer`, then the course's reference code
# computes the **validation loss** of the trained weights (teacher-forced cross-entropy per
# summary token) on pairs your code never receives; it must be below `MAX_SUMMARY_LOSS`.
# For scale: predicting every token from the training summaries' token frequencies scores
# about 5.6, an untrained model about 7.6. With `DLCOURSE_QUICK=1` a tiny run stands in
# (its numbers are meaningless).

# %%
estimate(2 if QUICK else 50)
if QUICK:
    summarize_profile = dict(SUMMARIZE, model=dict(max_len=64, n_layers=1, d_model=32, n_heads=4,
                                                   d_ffn=64, p_drop=0.0), steps=20, warmup=5)
else:
    summarize_profile = SUMMARIZE
p = summarize_profile
train_data = summarize.encode_pairs(tokenizer, splits["train"], p["max_source_len"], p["max_target_len"])
valid_data = summarize.encode_pairs(tokenizer, splits["validation"], p["max_source_len"],
                                    p["max_target_len"])
documents = summarize.unflatten(train_data["documents"], train_data["document_lengths"])
summaries = summarize.unflatten(train_data["summaries"], train_data["summary_lengths"])

seed_everything(0)
summarizer = transformer.Transformer(summarize.VOCAB_SIZE, summarize.PAD_ID, summarize.EOS_ID,
                                     **p["model"])
print(f"{sum(q.numel() for q in summarizer.parameters()):,} parameters")
bar = tqdm(total=p["steps"], desc="training", mininterval=1.0)


def show_progress(step, total, loss):
    bar.update(1)
    if step % 25 == 0:
        bar.set_postfix(loss=f"{loss:.3f}")


started = time.perf_counter()
summary_losses = transformer.train_summarizer(
    summarizer, documents, summaries, steps=p["steps"], batch_size=p["batch_size"], lr=p["lr"],
    max_source_len=p["max_source_len"], max_target_len=p["max_target_len"], warmup=p["warmup"],
    device=device, on_step=show_progress)
bar.close()
print(f"trained in {time.perf_counter() - started:.0f} s on the clock")

# %% [markdown]
# The loss curve, with the validation loss of the final weights as a dashed line.

# %%
validation_loss = summarize_loss(transformer, summarizer, valid_data, device)
window = max(1, len(summary_losses) // 25)
smooth = torch.tensor(summary_losses).unfold(0, window, 1).mean(1)
fig, ax = plt.subplots(figsize=(7, 3.5))
ax.plot(summary_losses, alpha=0.35, label="training, per step")
ax.plot(range(window - 1, len(summary_losses)), smooth, label=f"training, mean of {window} steps")
ax.axhline(validation_loss, color="k", linestyle="--", label=f"validation {validation_loss:.2f}")
ax.set(xlabel="step", ylabel="cross-entropy per token", title="summarization loss")
ax.legend()
plt.show()
print(f"validation loss {validation_loss:.3f} (the autograder asks for < {MAX_SUMMARY_LOSS})")
if QUICK:
    print("quick mode: far too short a run to reach it; unset DLCOURSE_QUICK for the real one")

# %% [markdown]
# Generated summaries next to the references, and ROUGE (the overlap of unigrams, bigrams and
# the longest common subsequence with the reference, as F-measures; `rouge-score`, the
# implementation the source uses). Expect generic summaries ("Return the ... of an array."):
# a model this small learns the style of docstrings long before their content.

# %%
def to_text(ids):
    ids = ids.tolist()
    if summarize.EOS_ID in ids:
        ids = ids[:ids.index(summarize.EOS_ID)]
    return tokenizer.decode([i for i in ids if i != summarize.PAD_ID])


valid_docs = summarize.unflatten(valid_data["documents"], valid_data["document_lengths"])
generated = []
for start in tqdm(range(0, len(valid_docs), 64), desc="generating"):
    batch = transformer.collate_summaries(valid_docs[start:start + 64], [[0]] * len(valid_docs[start:start + 64]),
                                          summarize.PAD_ID, summarize.EOS_ID,
                                          p["max_source_len"], p["max_target_len"])
    out = transformer.greedy_summarize(summarizer.eval(), batch["input_ids"].to(device),
                                       p["max_target_len"])
    generated += [to_text(row) for row in out.cpu()]
references = [pair["summary"] for pair in splits["validation"]]
for pair, text in list(zip(splits["validation"], generated))[:6]:
    print(f"{pair['name']}\n  reference: {pair['summary']}\n  generated: {text}")
scores = summarize.rouge(generated, references)
print("ROUGE F-measures on the validation docstrings:",
      ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))

# %% [markdown]
# **The source's setting.** With a GPU, XSum saved by `datasets` (`DatasetDict.save_to_disk`),
# the source's subset indices and t5-small's tokenizer in local folders, `dlkit.summarize`
# reproduces the source's run: `load_xsum_subset` and `load_t5_tokenizer` read them,
# `tokenize_pairs` cuts at 1,024 and 128 tokens, and `train_xsum` trains the source's model
# (4 + 4 layers, `d_model = 512`, 8 heads, `d_ffn = 2048`, dropout 0.1) for two epochs of
# batch 16 (AdamW, lr 1e-4, weight decay 0.01, 10% warm-up) with your `train_summarizer`,
# and reports the validation loss after each epoch (the source expects it near 5.0). Nothing
# is downloaded: the paths are arguments.
#
# When you are done, run `make grade A=transformer` in a terminal: it prints the score table on
# the public inputs, the training cases included. Your grade comes from the course's autograder,
# which runs the same cases on other inputs.
#
# ## Part 9. Written questions
#
# Answer briefly (a few sentences each) in the cells below.
#
# **Q1. Why scale by $1/\sqrt{d}$?** Suppose the entries of a query and a key are independent,
# with mean 0 and variance 1. What is the variance of their dot product when the head size is
# $d$? What would happen to the softmax, and to its gradients, for $d = 512$ without the scaling?

# %% [markdown]
# *Your answer:*
#

# %% [markdown]
# **Q2. The causal mask.** Imagine the decoder's self-attention is called without `causal=True`.
# What would happen to the training loss, and why would the model then be useless with
# `greedy_decode`? The causality checks (in `attention/causal`, `layer/decoder_vs_torch` and
# `model/forward`) catch this without knowing the correct outputs. Explain how they do it.

# %% [markdown]
# *Your answer:*
#

# %% [markdown]
# **Q3. Post-LN or pre-LN.** Our layers compute $x \leftarrow \mathrm{LN}(x + f(x))$ (post-LN).
# Many recent models use $x \leftarrow x + f(\mathrm{LN}(x))$ (pre-LN). In which of the two does
# an unchanged copy of the input reach the last layer? Why do post-LN models usually need a
# learning-rate warm-up, and which variant would you choose for a 48-layer model?

# %% [markdown]
# *Your answer:*
#

# %% [markdown]
# **Q4. Softmax in float32.** `scaled_dot_product_attention` computes the softmax in float32 even
# when `q`, `k` and `v` are float16. Float16's largest finite value is 65504, and it keeps only
# about 3 significant decimal digits. Describe one thing that goes wrong when the scores, the
# exponentials or their sum stay in float16. Also, what does a row whose keys are *all*
# padding produce with `-inf` masking?

# %% [markdown]
# *Your answer:*
#

# %% [markdown]
# **Q5. Tied embeddings.** `lm_head.weight` is the same tensor as `emb_word.weight`. How many
# parameters does tying save in our model, and how many with a 32,000-token vocabulary and
# `d_model = 512`? Interpret the output logit of token *w* as a dot product: what does tying
# ask of the embedding of *w*?

# %% [markdown]
# *Your answer:*
#
