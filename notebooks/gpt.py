# %% [markdown]
# # A small GPT: a language model of Shakespeare's dialogues
#
# In this assignment you write a decoder-only Transformer (the architecture of GPT) from
# scratch, train it to continue Shakespeare's dialogues word by word, and then make it
# generate: greedily, with a temperature, with top-k and with nucleus (top-p) sampling, and
# fast, with a KV cache.
#
# You write your code in `assignments/gpt.py`; this notebook explains each part and checks it
# as you go. The parts:
#
# 1. attention heads, multi-head attention and the Transformer stack;
# 2. a word tokenizer and the data;
# 3. the language model `DialogueGPT` and its loss;
# 4. choosing the next token, `generate`, and the KV cache;
# 5. training, samples and attention maps;
# 6. written questions.
#
# **The mask convention of this assignment.** `attn_mask[b, i, j] == 1` means that query
# position *i* **may attend** to key position *j*; 0 blocks the pair. This is the opposite of
# the `transformer` assignment, where a key-padding mask is 1 at the positions to ignore. Read
# every docstring with that in mind: a mask read the wrong way round is one of the mistakes the
# grader knows by name.
#
# **How the checks work.** `check(gpt, "attention/")` runs the graded cases whose names start
# with `attention/` on public inputs and prints `PASS`, `FAIL` (with the output that is wrong,
# its error and a hint, or the name of a known mistake) or `TODO`. The graded cases run your
# classes in float64, so a correct implementation matches the reference to about 1e-15 and the
# tolerance is 1e-8. `load_assignment` imports a fresh copy of your file each time, so after
# editing `assignments/gpt.py`, re-run the setup cell.
#
# **Time.** The notebook runs torch on one thread, as the grader's training case does (a model
# this small gains nothing from a second thread, and on a busy laptop threads wait for each
# other). The training cell prints its estimate in CPU-seconds on one thread: a busy machine
# takes longer on the clock, but not more CPU time. Cells that print no estimate take a few
# seconds.

# %%
import functools
import os
import time

import matplotlib.pyplot as plt
import torch

from dlkit import load_assignment, pick_device, seed_everything, shakespeare
from dlkit.progress import estimate
from grader.check import check

gpt = load_assignment("gpt")

QUICK = bool(os.environ.get("DLCOURSE_QUICK"))  # a tiny run (the course's own tests)
torch.set_num_threads(1)  # the grader's setting for training
plt.rcParams["figure.dpi"] = 100
torch.set_printoptions(precision=3, sci_mode=False)
seed_everything(0)

# %% [markdown]
# ## Part 1. Attention and the Transformer stack
#
# **`AttentionHead(dim, n_hidden)`** owns three projections `W_Q`, `W_K`, `W_V`
# (`nn.Linear(dim, n_hidden)`). For an input `x` of shape (B, T, dim) it computes
#
# $$\alpha = \mathrm{softmax}\!\left(\frac{Q K^\top}{\sqrt{n_{hidden}}}\right), \qquad
# \text{out} = \alpha V,$$
#
# with the softmax over the keys (the last dimension), and returns `(out, alpha)`. Where
# `attn_mask == 0` the score is replaced by $-\infty$ before the softmax, so the weight of a
# blocked pair is exactly 0. The mask may be bool, int or float, and may live on another
# device than the scores: move it with `.to(scores.device)`.
#
# The head also takes an optional `kv_cache` dict. Ignore it for now (leave it `None`); you come
# back to it in Part 4.
#
# **`MultiHeadedAttention(dim, n_hidden, num_heads)`** holds `heads` (an `nn.ModuleList` of
# heads) and `project` (`nn.Linear(num_heads * n_hidden, dim)`). Its forward pass is a loop
# over the heads: concatenate their outputs on the last dimension, project, and stack their
# weights on dim 1 to (B, num_heads, T, T).
#
# **`Transformer(dim, attn_dim, mlp_dim, num_heads, num_layers)`** stacks `num_layers` of the
# given `AttentionResidual` blocks (attention, then the `FFN`, each with a residual connection)
# in `layers`, and with `return_attn=True` also returns every layer's weights, (B, L, H, T, T).

# %%
check(gpt, "attention/head", "attention/multi_head", "transformer/");  # not head_cache: Part 4

# %% [markdown]
# The source homework's own checks, on a bigger model: shapes, `alpha is None` without
# `return_attn`, a banded mask (each position sees itself and the one before), and a causal
# mask built with `torch.tril`.

# %%
with torch.no_grad():  # no training here: no gradients to track
    model = gpt.Transformer(dim=64, attn_dim=32, mlp_dim=64, num_heads=2, num_layers=4)
    x = torch.randn(10, 100, 64)
    out, alpha = model(x, attn_mask=None)
    print("output", tuple(out.shape), "| alpha is None:", alpha is None)
    out, alpha = model(x, attn_mask=None, return_attn=True)
    print("with return_attn:", tuple(alpha.shape))

    band = torch.eye(100) + torch.diag(torch.ones(99), -1)
    out, alpha = model(x, attn_mask=band.expand(10, -1, -1), return_attn=True)
    print("banded mask, blocked weights all exactly 0:",
          bool((alpha.permute(1, 2, 0, 3, 4)[:, :, band.expand(10, -1, -1) == 0] == 0).all()))
    print("row 1 of layer 0, head 0:", alpha[0, 0, 0, 1, :4])

    causal = torch.tril(torch.ones(100, 100)).unsqueeze(0).repeat(10, 1, 1)
    out, alpha = model(x, attn_mask=causal, return_attn=True)
    print("causal mask, largest weight above the diagonal:",
          float(alpha.masked_fill(~torch.ones(100, 100, dtype=torch.bool).triu(1), 0).max()))

# %% [markdown]
# ## Part 2. The tokenizer and the data
#
# The data are Shakespeare's plays, read offline from the `shakespeare` package, split into
# dialogues the way the source homework split tiny-shakespeare: one speech per dialogue, the
# speaker's name and a colon, then the lines. `shakespeare.load_input_txt(path)` reads the
# original tiny-shakespeare `input.txt` if you have it.
#
# `MyTokenizer(raw_text)` is a word tokenizer. Its vocabulary (given) is every distinct word
# of `shakespeare.word_tokenize(raw_text)`, after three special tokens: `<START>` = 0,
# `<PAD>` = 1, `<UNK>` = 2. `word_tokenize` splits punctuation off the words the way nltk's
# tokenizer does (`"III:"` gives `III` and `:`). Implement:
#
# * `encode(s)`: the start id, then one id per word, `<UNK>` for a word that is not in the
#   vocabulary; an int64 tensor.
# * `decode(ids)`: the tokens joined with single spaces, `<START>` included.

# %%
lines = shakespeare.dialogues(["richard_iii"])
print(len(lines), "dialogues in Richard III; the first two:\n")
print(lines[0][:200], "...\n")
print(lines[1])

# %%
check(gpt, "tokenizer/");
tok = gpt.MyTokenizer(shakespeare.play_text("richard_iii"))
ids = tok.encode("KING RICHARD III:\nSay that I did all this for love of her.")
print(tok.vocab_size, "words in the vocabulary")
print(ids)
print(tok.decode(ids))

# %% [markdown]
# `DialogueDataset` (given) serves each dialogue's ids, cut to `max_N`; `collate_fn` (given)
# pads a batch on the right with `<PAD>` and returns `input_ids` and `input_mask` (1 for a real
# token, 0 for padding). It takes the pad id as an argument: pass it with `functools.partial`.

# %%
dataset = gpt.DialogueDataset(tok, lines, max_N=64)
loader = torch.utils.data.DataLoader(dataset, batch_size=8,
                                     collate_fn=functools.partial(gpt.collate_fn, pad_id=tok.pad_id))
batch = next(iter(loader))
print({k: tuple(v.shape) for k, v in batch.items()})
print(batch["input_mask"][:3])

# %% [markdown]
# ## Part 3. The language model and its loss
#
# `DialogueGPT` embeds the ids with `tok_embed` (`nn.Embedding(vocab_size, dim)`), adds the
# position embeddings `pos_embed(0..T-1)` (`nn.Embedding(max_N, dim)`), and runs the
# Transformer with a **causal** mask: `causal_attn_mask[b, i, j] = 1` if $j \le i$ (use
# `torch.tril`), of shape (B, T, T). The given head turns each position into logits over the
# vocabulary. Padding is on the right and the loss ignores it, so the mask needs no padding
# part.
#
# `DialogueLoss` is the next-token cross-entropy: the logits at position *t* predict the token
# at *t + 1*. Weight each position's loss by `inp_mask[:, 1:]` and divide by the sum of those
# weights, so padding never counts and every real token counts once.

# %%
check(gpt, "model/");

# %% [markdown]
# ## Part 4. Choosing the next token, `generate`, and the KV cache
#
# Given the logits of the last position, the next token can be chosen
#
# * **greedily** (`temperature=0`): the argmax;
# * by **sampling** from `softmax(logits / temperature)`: a temperature below 1 sharpens the
#   distribution, above 1 flattens it;
# * with **top-k**: only the k most likely tokens may be drawn (`top_k_filter` sets the other
#   logits to $-\infty$);
# * with **nucleus (top-p)** sampling: only the smallest set of most likely tokens whose total
#   probability reaches *p* (`top_p_filter`). The token that carries the total across *p* is
#   kept.
#
# `sample_next_token` applies them in that order and draws with
# `torch.multinomial(probs, 1, generator=generator)`: with the same `torch.Generator`, a correct
# implementation draws exactly the same ids as the reference.

# %%
check(gpt, "sampling/");

# %% [markdown]
# **The KV cache.** Generating token by token, the plain way runs the whole sequence through
# the model at every step, although the keys and values of the earlier positions never change
# (the mask is causal). A KV cache keeps them: each head appends its new keys and values to
# `kv_cache["k"]`, `kv_cache["v"]`, and later steps run only the newest token. Two things must
# change in `DialogueGPT.forward` when `kv_cache.length` = P positions are cached: the new
# positions are P..P+T-1, and the mask has shape (B, T, P + T) with query *i* (at position
# P + i) seeing key *j* when $j \le P + i$ (`torch.tril(..., diagonal=P)`).
#
# `generate(input_ids, num_tokens, ...)` continues a whole batch, never past `max_N` tokens in
# all, with or without the cache; both must give the same tokens, and the cached logits must
# equal the uncached model's at every step.

# %%
check(gpt, "attention/head_cache", "generate/", "cache/");

# %% [markdown]
# Every graded case that runs inline, in one go: all should pass before you train.

# %%
all_passed = check(gpt)

# %% [markdown]
# ## Part 5. Training
#
# The autograder's training case trains your `DialogueGPT` with your code on 90% of Richard
# III's dialogues for a fixed number of steps (`PROFILES["cpu"]`: a 2-layer model, 64 wide,
# dialogues cut to `MAX_N` tokens), returns the weights, and then the course's reference code
# computes the loss on the held-out 10%, which your code never sees. It must be below
# `MAX_LOSS`. Here we train with the same settings (`shakespeare.train_gpt`: AdamW, warm-up and
# cosine decay, gradient clipping, one thread) and print a sample every "epoch" (a pass over
# the data).
#
# With `DLCOURSE_QUICK=1` (the course's own tests) the run is tiny and its loss meaningless.

# %%
from grader.suites.gpt import MAX_LOSS, MAX_N, PROFILES, model_config, split

estimate(3 if QUICK else 25)
profile = dict(PROFILES["cpu"])
train_lines, held_lines = split(0)
tok = gpt.MyTokenizer("\n\n".join(train_lines))
train_ids = shakespeare.encode_dialogues(tok, train_lines, MAX_N)
held_ids = shakespeare.encode_dialogues(tok, held_lines, MAX_N)
config = model_config(tok.vocab_size, "cpu")
if QUICK:
    profile.update(steps=20, warmup=5)
    config.update(dim=16, attn_dim=8, mlp_dim=16, num_layers=1)
    train_ids, held_ids = train_ids[:200], held_ids[:40]
device = pick_device("auto")
epoch = max(1, len(train_ids) // profile["batch_size"])
print(f"{len(train_ids)} training and {len(held_ids)} held-out dialogues, "
      f"{tok.vocab_size} words; one epoch = {epoch} steps")

seed_everything(0)
model = gpt.DialogueGPT(**config)
print(f"{sum(p.numel() for p in model.parameters()):,} parameters")
start = tok.encode("").unsqueeze(0).to(device)


def show_sample(step):
    sample = model.generate(start, 12)
    print(f"step {step:4d}: {tok.decode(sample[0].cpu())}")


started = time.perf_counter()
losses = shakespeare.train_gpt(model, gpt.DialogueLoss(), train_ids, tok.pad_id,
                               steps=profile["steps"], batch_size=profile["batch_size"],
                               lr=profile["lr"], warmup=profile["warmup"], device=device,
                               every=epoch, on_every=show_sample)
print(f"trained in {time.perf_counter() - started:.0f} s on the clock")
val = shakespeare.evaluate_loss(model, gpt.DialogueLoss(), held_ids, tok.pad_id, device=device)
print(f"held-out loss {val:.3f} (the autograder asks for < {MAX_LOSS})")

# %% [markdown]
# The training loss per step. The held-out loss is higher: with ten thousand words of text the
# model soon starts to memorise the training dialogues.

# %%
fig, ax = plt.subplots(figsize=(7, 3.5))
ax.plot(losses, alpha=0.4, label="training loss per step")
window = max(1, len(losses) // 20)
smooth = torch.tensor(losses).unfold(0, window, 1).mean(1)
ax.plot(range(window - 1, len(losses)), smooth, label=f"mean of {window} steps")
ax.axhline(val, color="k", ls="--", label=f"held-out loss {val:.2f}")
ax.set(xlabel="step", ylabel="cross-entropy (nats)", title="training")
ax.legend()
plt.show()

# %% [markdown]
# ### Greedy and sampled continuations
#
# Greedy decoding soon repeats itself; sampling with a temperature and a nucleus gives more
# varied (if not always sensible) text.

# %%
prompt = tok.encode("KING RICHARD:\n").unsqueeze(0).to(device)  # a speaker of the dialogues
g = torch.Generator().manual_seed(0)
print("greedy  :", tok.decode(model.generate(prompt, 30)[0].cpu()))
for t, p in ((1.0, None), (0.8, 0.9)):
    sample = model.generate(prompt, 30, temperature=t, top_p=p, generator=g)
    print(f"T={t} p={p}:", tok.decode(sample[0].cpu()))

# %% [markdown]
# ### What the model attends to
#
# The attention weights of the last layer while it reads a generated line: row *i* is the
# query at word *i*, and every row ends at the diagonal (the mask is causal).

# %%
line = model.generate(prompt, 14)
with torch.no_grad():
    _, alphas = model(line, return_attn=True)
words = tok.decode(line[0].cpu()).split(" ")
heads = alphas.shape[2]
fig, axes = plt.subplots(1, heads, figsize=(4.2 * heads, 4.2), squeeze=False)
for h in range(heads):
    ax = axes[0, h]
    ax.imshow(alphas[0, -1, h].cpu(), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(words)), words, rotation=90, fontsize=7)
    ax.set_yticks(range(len(words)), words if h == 0 else [""] * len(words), fontsize=7)
    ax.set_title(f"last layer, head {h}", fontsize=9)
plt.tight_layout()
plt.show()

# %% [markdown]
# ### How much the KV cache saves
#
# The same greedy generation with and without the cache (`tests/bench_gpt.py` measures it on a
# longer run).

# %%
n = 10 if QUICK else 40
for use_cache in (False, True):
    begun = time.perf_counter()
    model.generate(start, n, use_cache=use_cache)
    print(f"use_cache={use_cache}: {time.perf_counter() - begun:.2f} s for {n} tokens")

# %% [markdown]
# When you are done, run `make grade A=gpt` in a terminal for the score table (the training
# case included).
#
# ## Part 6. Written questions
#
# Answer briefly (a few sentences each) in the cells below.
#
# **Q1. Generating is slower than training.** Training on a dialogue of T tokens takes one
# forward pass, but generating T tokens takes T of them. Why can training compute every
# position at once while generation cannot?

# %% [markdown]
# *Your answer:*
#

# %% [markdown]
# **Q2. The samples over training.** Describe how the samples printed after each epoch change
# as training goes on (words, punctuation, speaker names, repetition).

# %% [markdown]
# *Your answer:*
#

# %% [markdown]
# **Q3. Greedy or nucleus.** Compare greedy decoding with nucleus (top-p) sampling on your
# model. Why does greedy decoding repeat itself, and what do the temperature and *p* trade off?

# %% [markdown]
# *Your answer:*
#

# %% [markdown]
# **Q4. The KV cache.** How many key and value vectors does each step of generation compute with
# and without the cache, for a sequence of length t? What does the cache cost in memory, and
# why must the positions of the new tokens continue from `kv_cache.length`?

# %% [markdown]
# *Your answer:*
#

# %% [markdown]
# **Q5. The mask convention.** In this assignment a mask is 1 where attention is allowed; in the
# `transformer` assignment a key-padding mask is 1 where it is not. What happens to a row of the
# attention weights if you read a causal mask the wrong way round, and how would you notice?

# %% [markdown]
# *Your answer:*
#
