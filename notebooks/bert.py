# %% [markdown]
# # BERT: from scratch, pretraining, fine-tuning, and inside its attention
#
# BERT is a Transformer *encoder*: every token attends to every other token, left and right.
# It learns language without labels by **masked-language modelling**: hide 15% of the
# tokens and predict them from the rest. The pretrained encoder's token features are then
# good enough that a small network on top of them, trained on a few labelled examples,
# classifies text. In this notebook you
#
# 1. build BERT from its pieces: scaled dot-product attention with a padding mask, a
#    multi-head layer with a fused q/k/v projection, a post-LN Transformer block, the model;
# 2. write BERT's input corruption (`mask_inputs`) and a pretraining step, and watch the
#    loss start at ln(vocabulary size);
# 3. put a GRU classifier on top of a **real pretrained BERT** (MiniLM: 6 layers, 384 wide,
#    BERT's WordPiece vocabulary; it ships as a Python package, so nothing downloads) and
#    fine-tune it to tell lines of Shakespeare's comedies from lines of his tragedies;
# 4. compute the pretrained model's attention maps yourself and look at what heads attend to.
#
# You write code in `assignments/bert.py`; every part has inline checks (`check(...)`) that
# compare your code with saved reference outputs. `make grade A=bert` gives the full score,
# including a training check that fine-tunes your classifier and measures it on held-out
# lines.
#
# **Data.** The source homework fine-tuned `bert-base-uncased` on IMDB movie reviews (90%
# validation accuracy was its target, on a GPU). No review corpus installs offline, so on a
# CPU the task is comedy versus tragedy, from the same offline Shakespeare texts as the `gpt`
# assignment. With a GPU and IMDB unpacked in `data/aclImdb`, `make grade` uses the source's
# task and target, and the last part of this notebook shows how to load it.
#
# **Time.** The notebook runs torch on one thread, as the grader's training case does (these
# models gain little from a second thread, and on a busy laptop threads wait for each other).
# Training cells print their estimate in CPU-seconds on one thread: a busy machine takes
# longer on the clock, but not more CPU time. Cells that print no estimate take a few seconds.

# %%
%matplotlib inline
import math
import os
import time

import matplotlib.pyplot as plt
import torch

from dlkit import REPO_ROOT, bert_data, load_assignment, seed_everything
from dlkit.progress import estimate, tqdm
from grader.check import check
from grader.suites.bert import PROFILES

bert = load_assignment("bert")  # your assignments/bert.py (re-run this cell after edits)
QUICK = bool(os.environ.get("DLCOURSE_QUICK"))  # tiny settings, for the course's own tests
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
seed_everything(1234)  # the source's SEED
torch.set_num_threads(1)  # the grader's setting for training
print(f"device {device}, quick mode {QUICK}")

# %% [markdown]
# ## Part 1. BERT from its pieces
#
# **Scaled dot-product attention.** For queries, keys and values of shape
# `(batch, heads, T, d)`, the weights are `softmax(q k^T / sqrt(d))` over the keys. A padding
# mask `(batch, T)` marks hidden **keys** with 1: their logits become -inf, so every query
# gives them weight exactly 0 (the mask hides *columns* of the attention matrix; hiding rows
# would leave the padded queries with nothing to attend to, and a softmax of all -inf is
# NaN). Dropout then zeroes some weights while training.
#
# **Your task:** `scaled_dot_product`. The cell after the check reruns the source's printed
# example: the middle key is hidden, so the middle column is 0.

# %%
check(bert, "attention/");

# %%
from grader.suites.bert import DEMO_K, DEMO_MASK, DEMO_Q, DEMO_V

q, k, v = (torch.tensor(t)[None, None] for t in (DEMO_Q, DEMO_K, DEMO_V))
values, attention = bert.scaled_dot_product(q, k, v, attn_drop_rate=0.0,
                                            mask=torch.tensor(DEMO_MASK))
print("Values\n", values)
print("Attention\n", attention)

# %% [markdown]
# **Multi-head attention.** One `nn.Linear(E, 3E)` computes all heads' queries, keys and
# values at once; viewed as `(B, T, heads, 3 * head_dim)`, each head's q, k and v sit side by
# side. After attention, the heads are merged back to `(B, T, E)` and mixed by `o_proj`
# (forgetting `o_proj` was a bug of the source's own solution). Attention dropout must be
# off in `eval()` mode.
#
# **The block** is post-LN, in the source's order: attention, dropout, residual, LayerNorm;
# then a feed-forward network (Linear, GELU, Linear, dropout), residual, LayerNorm. It takes
# and returns a tuple `(x, mask)`, so blocks chain in `nn.Sequential`. The check compares it
# with `torch.nn.TransformerEncoderLayer` carrying the same weights.
#
# **BertModel**: token embedding (with one extra row for `[MASK]`), the given sinusoidal
# `PositionalEncoding`, the blocks, and a linear layer to vocabulary logits.
#
# **Your task:** `MultiHeadAttention` (with `_reset_parameters`: Xavier weights, zero
# biases), `TransformerBlock`, `BertModel`.

# %%
check(bert, "mha/", "block/", "bert/");

# %% [markdown]
# ## Part 2. Masked-language-model pretraining
#
# `mask_inputs` selects 15% of the (non-padding) tokens. Of those, 80% become `[MASK]`, 10% a
# random token of the vocabulary and 10% stay as they are, each chosen per token at random;
# the labels are the original ids at the selected positions and -100 (ignored by the
# cross-entropy) everywhere else. So about 15% of the tokens are labelled, 12% are `[MASK]`
# and about 13.5% change (a random token is sometimes the same one).
#
# **Your task:** `mask_inputs` (with the three draws in the order its docstring gives, so
# the checks can compare exactly) and `pretraining_step`.

# %%
check(bert, "mlm/");

# %%
vocab_size, MASK_TOKEN_IND, PAD_IND = 100, 100, 0  # the source's setting
text = torch.randint(1, vocab_size, (128, 128))
masked, labels = bert.mask_inputs(text, MASK_TOKEN_IND, vocab_size, mask_rate=0.15,
                                  pad_id=PAD_IND)
print(f"changed {(masked != text).float().mean():.4f} (about 0.135), "
      f"masked {(masked == MASK_TOKEN_IND).float().mean():.4f} (0.12), "
      f"labelled {(labels != -100).float().mean():.4f} (0.15)")

# %% [markdown]
# Pretraining the source's small model on random tokens: nothing can be learned beyond
# each token's frequency, so the loss starts near ln(100) = 4.61 (a little above: the
# initial logits are not all equal) and can only fall towards ln(99).

# %%
estimate(6 if QUICK else 40)
seed_everything(1234)
mlm = bert.BertModel(2, vocab_size, 64, 4, 0.1, 0.1).to(device).train()
optimizer = torch.optim.AdamW(mlm.parameters(), lr=1e-4, weight_decay=0.01)
steps = 5 if QUICK else 60
losses = [bert.pretraining_step(mlm, optimizer, torch.randint(1, vocab_size, (128, 128)).to(device),
                                MASK_TOKEN_IND, vocab_size, 0.15, PAD_IND)
          for _ in tqdm(range(steps), desc="pretraining")]
plt.figure(figsize=(5, 3))
plt.plot(losses)
plt.axhline(math.log(vocab_size), color="gray", linestyle="--", label="ln(100)")
plt.xlabel("step")
plt.ylabel("masked-LM loss")
plt.legend()
plt.show()
print(f"first loss {losses[0]:.3f}, last {losses[-1]:.3f}, ln(100) = {math.log(100):.3f}")

# %% [markdown]
# ## Part 3. Fine-tuning on a pretrained BERT
#
# `BERTGRUSentiment` runs the frozen pretrained BERT under `torch.no_grad()`, feeds its
# token features to a GRU, and classifies from the GRU's final hidden state (both
# directions of the last layer). Only the GRU and the output layer learn.
#
# **Your task:** `BERTGRUSentiment`, `binary_accuracy`, `train`, `evaluate`,
# `predict_sentiment`. The checks use a tiny randomly initialised BERT; the training below
# uses the real one.

# %%
check(bert, "finetune/");

# %%
minilm, tokenizer = bert_data.load_minilm("sdpa")
print(f"MiniLM: {minilm.config.num_hidden_layers} layers, hidden {minilm.config.hidden_size}, "
      f"{minilm.config.num_attention_heads} heads, vocabulary {tokenizer.vocab_size}")
print(tokenizer.tokenize("Shall I compare thee to a summer's day?"))

# %% [markdown]
# The task: label 1 for a speech from a comedy, 0 for one from a tragedy (speeches of 6 to 40
# words, without the speaker's name). The held-out split is fixed by a hash of each speech,
# so no speech is in both.

# %%
profile = PROFILES["cpu"]
n_train, n_valid = (128, 64) if QUICK else (profile["n_train"], profile["n_test"])
g = torch.Generator().manual_seed(0)
train_texts, train_labels = bert_data.genre_sample("train", n_train, g)
valid_texts, valid_labels = bert_data.genre_sample("test", n_valid, g)
for text, label in list(zip(train_texts, train_labels))[:4]:
    print("comedy " if label else "tragedy", "|", text)
train_ids = bert_data.encode(tokenizer, train_texts, profile["max_length"])
valid_ids = bert_data.encode(tokenizer, valid_texts, profile["max_length"])
print("train", tuple(train_ids.shape), "validation", tuple(valid_ids.shape))

# %%
estimate(2 if QUICK else 35)
seed_everything(profile["seed"])
model = bert.BERTGRUSentiment(minilm, **profile["model"])
print(f"trainable parameters: {bert.freeze_bert(model):,} of "
      f"{sum(p.numel() for p in model.parameters()):,}")
model = model.to(device)
optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=profile["lr"])
criterion = torch.nn.BCEWithLogitsLoss()
epochs = 1 if QUICK else profile["epochs"]
history = {"train_loss": [], "train_acc": [], "valid_loss": [], "valid_acc": []}
shuffle = torch.Generator().manual_seed(profile["seed"])
for epoch in range(epochs):
    start = time.time()
    to_device = lambda batches: [(t.to(device), y.to(device)) for t, y in batches]
    train_batches = to_device(bert_data.batches(train_ids, train_labels, profile["batch_size"],
                                                generator=shuffle))
    train_loss, train_acc = bert.train(model, tqdm(train_batches, desc=f"epoch {epoch + 1}"),
                                       optimizer, criterion)
    valid_loss, valid_acc = bert.evaluate(model, to_device(bert_data.batches(
        valid_ids, valid_labels, 64)), criterion)
    for key, value in zip(history, (train_loss, train_acc, valid_loss, valid_acc)):
        history[key].append(value)
    mins, secs = bert.epoch_time(start, time.time())
    print(f"epoch {epoch + 1}: {mins}m {secs}s | train loss {train_loss:.3f} acc "
          f"{train_acc:.1%} | validation loss {valid_loss:.3f} acc {valid_acc:.1%}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
for ax, what in zip(axes, ("loss", "acc")):
    ax.plot(range(1, epochs + 1), history[f"train_{what}"], marker="o", label="train")
    ax.plot(range(1, epochs + 1), history[f"valid_{what}"], marker="o", label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel(what)
    ax.legend()
axes[1].axhline(0.5, color="gray", linestyle="--")
axes[1].axhline(profile["min_accuracy"], color="red", linestyle=":")
plt.show()

# %% [markdown]
# **Your sentences.** The source asked for a few short sentences of your own with the
# model's predictions. Write some lines that sound like a comedy and some that sound like
# a tragedy (edit the list), and see what the model makes of them: the number is
# P(comedy).

# %%
my_lines = [
    "Come, let us dance and sing, for tonight we shall be married!",
    "What a merry fool art thou, to woo a lady with a song.",
    "O, I am slain! Revenge my death, and bury me with my father.",
    "The blood is on my hands, and it will not wash away.",
]
for line in my_lines:
    p = bert.predict_sentiment(model, tokenizer, line, max_input_length=profile["max_length"])
    print(f"{p:.3f}  {'comedy ' if p > 0.5 else 'tragedy'}  {line}")

# %% [markdown]
# **IMDB, the source's task.** With `aclImdb_v1.tar.gz` unpacked in `data/` (the folders
# `aclImdb/{train,test}/{pos,neg}`), `bert_data.load_imdb` reads the reviews (label 1 =
# positive) and the same code fine-tunes on them; `make grade` on a GPU then uses the
# source's 90% target.

# %%
if bert_data.imdb_available():
    imdb_texts, imdb_labels = bert_data.load_imdb(split="train")
    print(f"IMDB: {len(imdb_texts)} training reviews, {int(imdb_labels.sum())} positive")
else:
    print(f"IMDB is not in {bert_data.IMDB_FOLDER} (optional)")

# %% [markdown]
# ## Part 4. Inside the pretrained BERT's attention
#
# A `transformers` BERT keeps each layer's attention inside `layer.attention.self`: linear
# maps `query`, `key` (and `value`) of the layer's input. Recomputing the attention weights
# from them is a good test of your understanding of multi-head attention: split into heads,
# scale, mask padding, softmax.
#
# **Your task:** `bert_attention(bert, input_ids, token_type_ids, attention_mask)`: every
# layer's and head's attention `(layers, B, heads, T, T)`. The check compares it with the
# library's own `output_attentions=True`, on a tiny BERT; below, on MiniLM.

# %%
check(bert, "inside/");

# %%
viewer, _ = bert_data.load_minilm("eager")  # "eager" attention can also return its maps
pair = ("I wanted to have a party", "I bought a cake for it.")
encoded = tokenizer(*pair, return_tensors="pt")
tokens = tokenizer.convert_ids_to_tokens(encoded["input_ids"][0])
maps = bert.bert_attention(viewer, encoded["input_ids"], encoded["token_type_ids"],
                           encoded["attention_mask"])[:, 0]  # (layers, heads, T, T)
with torch.no_grad():
    library = torch.stack(viewer(**encoded, output_attentions=True).attentions)[:, 0]
print(f"{tuple(maps.shape)} maps; largest difference from output_attentions: "
      f"{(maps - library).abs().max():.1e}")


# %% tags=["figure:heads"]
def show_heads(maps, tokens, layer, heads=range(6)):
    """Heat maps of some heads of one layer: row = query token, column = key token."""
    fig, axes = plt.subplots(1, len(heads), figsize=(3.2 * len(heads), 3.4))
    for ax, head in zip(axes, heads):
        ax.imshow(maps[layer, head], cmap="viridis", vmin=0, vmax=1)
        ax.set_xticks(range(len(tokens)), tokens, rotation=90, fontsize=7)
        ax.set_yticks(range(len(tokens)), tokens, fontsize=7)
        ax.set_title(f"layer {layer}, head {head}", fontsize=9)
    plt.tight_layout()
    plt.show()


show_heads(maps, tokens, layer=0)
show_heads(maps, tokens, layer=2)
show_heads(maps, tokens, layer=5)

# %% [markdown]
# The same sentence with its words reversed, and "play" as a verb and as a noun (the
# source's examples):

# %% tags=["figure:heads-order"]
for sentence in ("party a have to wanted I", "I was going to play at the park.",
                 "I was going to a play in the park"):
    enc = tokenizer(sentence, return_tensors="pt")
    show_heads(bert.bert_attention(viewer, enc["input_ids"])[:, 0],
               tokenizer.convert_ids_to_tokens(enc["input_ids"][0]), layer=2, heads=range(4))

# %% [markdown]
# A randomly initialised model of the same shape, for comparison:

# %% tags=["figure:heads-random"]
random_bert = bert_data.tiny_bert(vocab_size=tokenizer.vocab_size, hidden_size=384, layers=6,
                                  heads=12, max_positions=512)
show_heads(bert.bert_attention(random_bert, encoded["input_ids"], encoded["token_type_ids"])[:, 0],
           tokens, layer=2, heads=range(4))

# %% [markdown]
# **BertViz** (the source's tool) draws the same maps interactively. Its views hold every
# weight and load their JavaScript from the web, so they go to pages of their own (open them
# in a browser, online) rather than into this notebook, whose saved size they would multiply;
# the heat maps above work everywhere.

# %%
try:
    from bertviz import head_view, model_view
    sentence_b_start = int(encoded["token_type_ids"][0].tolist().index(1))
    attention = tuple(maps[:, None])  # one (1, heads, T, T) tensor per layer
    pages = REPO_ROOT / "data" / "bertviz"
    pages.mkdir(parents=True, exist_ok=True)
    for view in (head_view, model_view):
        page = view(attention, tokens, sentence_b_start, html_action="return")
        (pages / f"{view.__name__}.html").write_text(page.data)
        print(f"BertViz {view.__name__}: {pages / view.__name__}.html")
except ImportError:
    print("BertViz is not installed (make install adds it)")

# %% [markdown]
# ## Questions
#
# **Q1. Residual connections.** Why are the residual connections crucial in a Transformer?
# Think of a deep stack at initialisation and of the gradient path from the loss to the
# first layer.

# %% [markdown]
# *Your answer:*

# %% [markdown]
# **Q2. Layer normalisation.** Why is layer normalisation important in the Transformer, and
# what changes between the post-LN order used here and the pre-LN order of later models?

# %% [markdown]
# *Your answer:*

# %% [markdown]
# **Q3. The 1/sqrt(d) scale.** Why are the logits divided by sqrt(d_k)? What happens to the
# softmax and its gradients without it, as d_k grows?

# %% [markdown]
# *Your answer:*

# %% [markdown] tags=["figure:heads"]
# **Q4. What heads attend to.** In the heat maps, find heads with a clear pattern (the
# previous or next token, `[SEP]`, the same word, the other sentence). Describe two, with
# their layer and head, and say why a model trained to fill in masked words would learn
# them. Why do different heads learn different patterns?

# %% [markdown]
# *Your answer:*

# %% [markdown] tags=["figure:heads-order"]
# **Q5. Order and meaning.** How do the maps change for the reversed sentence and for
# "play" as a verb and as a noun? What does that say about BERT being bidirectional, and
# about the features it gives the word "play" in each sentence?

# %% [markdown]
# *Your answer:*

# %% [markdown] tags=["figure:heads", "figure:heads-random"]
# **Q6. Pretrained versus random.** Compare the random model's maps with MiniLM's. What
# does pretraining add, and what would a classifier on the random model's features have to
# learn by itself?

# %% [markdown]
# *Your answer:*
