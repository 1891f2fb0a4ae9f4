"""Summarization data for `transformer` part two: an offline corpus, its tokenizer, ROUGE, XSum.

The offline corpus is made of the docstrings of two pinned packages, numpy 2.4.6 and torch
2.13.0: the summary line of a function's or class's docstring is the target, the rest of
that docstring is the document ("Return the cumulative sum of the elements along a given
axis." <- its parameters, notes and examples). Only objects defined by the package itself
count (inherited builtins such as `str.isalpha` are skipped, so the Python version does not
change the corpus); entries whose summary has fewer than 3 words or whose document has fewer
than 15 are skipped, and identical documents are kept once. Splits come from a stable hash
of the summary line (10% validation, the rest training), so adding entries never moves
others, and identical targets never straddle two splits.

The tokenizer is a SentencePiece unigram model with T5's ids (pad 0, eos 1, unk 2, no bos),
trained here on the training split only and cached under `data/summarize/` (git-ignored)
with a manifest of the versions and the corpus hash; `load_tokenizer()` rebuilds it
deterministically (one thread, no sampling; about 5-10 s) when it is missing or stale.

The source's setting: `load_xsum_subset` reads XSum in Hugging Face `datasets` format from a
local copy (`datasets.load_from_disk`) and selects the source's subset indices;
`load_t5_tokenizer` reads t5-small's tokenizer from a local folder; `tokenize_pairs` cuts
documents at 1,024 tokens and summaries at 128, as the source does. Nothing downloads.
"""
import functools
import hashlib
import importlib
import inspect
import json
import os
import platform
import re
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import torch

for _flag in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_flag, "1")  # never reach the network, whatever is imported later

PAD_ID, EOS_ID, UNK_ID = 0, 1, 2   # T5's ids
VOCAB_SIZE = 2000
VALID_PERCENT = 10
CACHE = Path(__file__).resolve().parent.parent / "data" / "summarize"
XSUM_MAX_SOURCE, XSUM_MAX_TARGET = 1024, 128   # the source's truncation lengths

MODULES = {
    "numpy": ["numpy", "numpy.linalg", "numpy.fft", "numpy.random", "numpy.ma",
              "numpy.polynomial", "numpy.polynomial.polynomial", "numpy.polynomial.chebyshev",
              "numpy.polynomial.legendre", "numpy.polynomial.hermite",
              "numpy.polynomial.hermite_e", "numpy.polynomial.laguerre", "numpy.strings",
              "numpy.char", "numpy.testing", "numpy.lib.stride_tricks", "numpy.rec"],
    "torch": ["torch", "torch.nn", "torch.nn.functional", "torch.linalg", "torch.fft",
              "torch.special", "torch.distributions", "torch.optim", "torch.optim.lr_scheduler",
              "torch.nn.init", "torch.nn.utils", "torch.autograd", "torch.utils.data",
              "torch.masked", "torch.signal.windows", "torch.testing", "torch.func",
              "torch.sparse", "torch.random", "torch.serialization", "torch.amp"],
}
SIGNATURE = re.compile(r"^[\w.]+\(.*\)(\s*->\s*.*)?$", re.S)  # "add(x1, x2, /, ...) -> Tensor"


def _own(obj, root: str) -> bool:
    """True when `obj` was defined by the package `root` (not a builtin it re-exports)."""
    module = getattr(obj, "__module__", None)
    return isinstance(module, str) and module.split(".")[0] == root


def _docstrings(root: str) -> dict[str, str]:
    """{qualified name: raw docstring} of the public functions, classes and class members."""
    found = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for module_name in MODULES[root]:
            module = importlib.import_module(module_name)
            for name in sorted(dir(module)):
                if name.startswith("_"):
                    continue
                obj = getattr(module, name, None)
                if not _own(obj, root):
                    continue
                items = [(f"{module_name}.{name}", obj)]
                if inspect.isclass(obj):  # its own members only: never inherited builtins
                    items += [(f"{module_name}.{name}.{a}", getattr(obj, a, None))
                              for a in sorted(vars(obj)) if not a.startswith("_")]
                for qualname, item in items:
                    doc = getattr(item, "__doc__", None)
                    if isinstance(doc, str):
                        found.setdefault(qualname, doc)
    return found


def split_docstring(doc: str) -> tuple[str, str] | None:
    """(summary line, document) of a docstring, or None when it is too short to be a pair.

    A leading signature paragraph ("cumsum(a, axis=None, ...)") is dropped; the summary is
    the first paragraph on one line, the document the paragraphs after it."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", inspect.cleandoc(doc)) if p.strip()]
    if len(paragraphs) > 2 and SIGNATURE.match(paragraphs[0]):
        paragraphs = paragraphs[1:]
    if len(paragraphs) < 2:
        return None
    summary, document = " ".join(paragraphs[0].split()), "\n\n".join(paragraphs[1:])
    if len(summary.split()) < 3 or len(document.split()) < 15:
        return None
    return summary, document


@functools.lru_cache(maxsize=1)
def _corpus_json() -> str:
    """The corpus as JSON, collected in a fresh interpreter that imports only numpy and torch:
    other libraries rewrite docstrings when imported (scipy appends to numpy.sinc's), so the
    caller's process would give a corpus that depends on what it imported before."""
    env = {k: os.environ[k] for k in ("PATH", "LANG", "HOME") if k in os.environ}
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); "
            "from dlkit.summarize import collect_corpus; "
            "sys.stdout.write(json.dumps(collect_corpus()))")
    root = str(Path(__file__).resolve().parents[1])
    ran = subprocess.run([sys.executable, "-I", "-c", code, root], capture_output=True,
                         text=True, env=env, check=False)
    if ran.returncode != 0:
        last = (ran.stderr.strip().splitlines() or ["no message"])[-1]
        raise RuntimeError(f"collecting the docstring corpus failed: {last}")
    return ran.stdout


def docstring_corpus() -> list[dict]:
    """Every (name, summary, document) pair of numpy's and torch's docstrings, sorted by name,
    each document kept once: 2,284 pairs with numpy 2.4.6 and torch 2.13.0 (2,038 training,
    246 validation; see `corpus_manifest`). The same whatever the calling process imported."""
    return json.loads(_corpus_json())


def collect_corpus() -> list[dict]:
    """`docstring_corpus` as seen from the current process (call it in a fresh one)."""
    pairs, documents = [], set()
    for root in MODULES:
        for qualname, doc in sorted(_docstrings(root).items()):
            pair = split_docstring(doc)
            if pair is None or pair[1] in documents:
                continue
            documents.add(pair[1])
            pairs.append({"name": qualname, "summary": pair[0], "document": pair[1]})
    return pairs


def split_name(summary: str) -> str:
    """'validation' for about VALID_PERCENT% of the summaries, else 'train' (a stable hash)."""
    return "validation" if zlib.crc32(summary.encode()) % 100 < VALID_PERCENT else "train"


def corpus_splits(corpus: list[dict] | None = None) -> dict[str, list[dict]]:
    """{'train': [...], 'validation': [...]} of `docstring_corpus()`."""
    corpus = docstring_corpus() if corpus is None else corpus
    out = {"train": [], "validation": []}
    for pair in corpus:
        out[split_name(pair["summary"])].append(pair)
    return out


def corpus_manifest(corpus: list[dict]) -> dict:
    """What a cached tokenizer was built from: versions, corpus size and its SHA-256."""
    import numpy
    digest = hashlib.sha256(json.dumps(corpus, sort_keys=True).encode()).hexdigest()
    return {"python": platform.python_version(), "numpy": numpy.__version__,
            "torch": torch.__version__.split("+")[0], "pairs": len(corpus), "sha256": digest,
            "vocab_size": VOCAB_SIZE}


def build_tokenizer(folder: Path = CACHE, corpus: list[dict] | None = None) -> Path:
    """Train the SentencePiece unigram model on the training split and write it to `folder`
    (spm.model, then manifest.json, each atomically: a concurrent reader sees the old file or
    the new one). Deterministic: one thread, lines in corpus order, no paths in the model,
    so two builds give identical bytes."""
    import io
    import sentencepiece as spm
    corpus = docstring_corpus() if corpus is None else corpus
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lines = [line.strip() for pair in corpus_splits(corpus)["train"]
             for line in (pair["summary"] + "\n" + pair["document"]).splitlines() if line.strip()]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, model_type="unigram",
        vocab_size=VOCAB_SIZE, pad_id=PAD_ID, eos_id=EOS_ID, unk_id=UNK_ID, bos_id=-1,
        character_coverage=1.0, num_threads=1, shuffle_input_sentence=False,
        input_sentence_size=0, max_sentence_length=8192, minloglevel=2)
    manifest = json.dumps(corpus_manifest(corpus), indent=1) + "\n"
    for name, data in (("spm.model", model.getvalue()), ("manifest.json", manifest.encode())):
        partial = folder / f".{name}.{os.getpid()}"
        partial.write_bytes(data)
        os.replace(partial, folder / name)
    return folder / "spm.model"


def load_tokenizer(folder: Path = CACHE, corpus: list[dict] | None = None):
    """The cached SentencePiece processor, rebuilt when missing or built from another corpus."""
    import sentencepiece as spm
    corpus = docstring_corpus() if corpus is None else corpus
    folder = Path(folder)
    manifest = folder / "manifest.json"
    if not (folder / "spm.model").exists() or not manifest.exists() or \
            json.loads(manifest.read_text()) != corpus_manifest(corpus):
        build_tokenizer(folder, corpus)
    return spm.SentencePieceProcessor(model_file=str(folder / "spm.model"))


def encode_pairs(tokenizer, pairs: list[dict], max_source: int, max_target: int,
                 dtype=torch.int16) -> dict[str, torch.Tensor]:
    """Token ids of documents and summaries, cut to max_source / max_target - 1 tokens (room
    for the EOS that `collate_summaries` appends), flattened with their lengths:
    {'documents', 'document_lengths', 'summaries', 'summary_lengths'} (1-D tensors)."""
    docs = [ids[:max_source - 1] for ids in tokenizer.encode([p["document"] for p in pairs])]
    sums = [ids[:max_target - 1] for ids in tokenizer.encode([p["summary"] for p in pairs])]
    return {"documents": torch.tensor([i for row in docs for i in row], dtype=dtype),
            "document_lengths": torch.tensor([len(r) for r in docs], dtype=torch.int32),
            "summaries": torch.tensor([i for row in sums for i in row], dtype=dtype),
            "summary_lengths": torch.tensor([len(r) for r in sums], dtype=torch.int32)}


def unflatten(ids: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
    """Inverse of the flattening in `encode_pairs`: a list of id lists."""
    return [row.tolist() for row in torch.split(ids.long(), lengths.tolist())]


def rouge(predictions: list[str], references: list[str]) -> dict[str, float]:
    """Mean ROUGE-1, ROUGE-2 and ROUGE-L F-measures (rouge-score, Porter stemmer; offline)."""
    from rouge_score import rouge_scorer
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    totals = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for prediction, reference in zip(predictions, references):
        for key, score in scorer.score(reference, prediction).items():
            totals[key] += score.fmeasure
    return {k: v / max(1, len(predictions)) for k, v in totals.items()}


# ---------------------------------------------------------------------------------------
# The source's setting: XSum from a local copy, t5-small's tokenizer from a local folder
# ---------------------------------------------------------------------------------------

def load_subset_indices(path) -> dict[str, list[int]]:
    """The source's subset (24,350 / 1,281 / 1,326 rows of XSum's splits): a JSON file
    {"train": [...], "validation": [...], "test": [...]} or the source's blob (base64 of
    gzipped JSON [train, validation, test])."""
    import base64
    import gzip
    raw = Path(path).read_bytes()
    try:
        data = json.loads(raw)
    except ValueError:
        data = json.loads(gzip.decompress(base64.b64decode(raw)))
    if isinstance(data, list) and len(data) == 3:
        data = dict(zip(("train", "validation", "test"), data))
    if not isinstance(data, dict) or set(data) != {"train", "validation", "test"}:
        raise ValueError(f"{path}: expected train/validation/test index lists")
    return {k: [int(i) for i in v] for k, v in data.items()}


def load_xsum_subset(folder, indices: dict[str, list[int]] | None = None):
    """XSum saved with `DatasetDict.save_to_disk` (fields document, summary, id) -> the
    DatasetDict restricted to `indices` per split (all rows when None)."""
    from datasets import load_from_disk
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"no XSum copy at {folder} (save_to_disk layout expected)")
    data = load_from_disk(str(folder))
    for split in ("train", "validation", "test"):
        if split not in data:
            raise ValueError(f"{folder} has no '{split}' split (found {list(data)})")
        missing = {"document", "summary"} - set(data[split].column_names)
        if missing:
            raise ValueError(f"{folder}/{split} lacks the columns {sorted(missing)}")
        if indices is not None:
            data[split] = data[split].select(indices[split])
    return data


def load_t5_tokenizer(folder):
    """t5-small's tokenizer from a local folder (spiece.model and its config): pad 0, eos 1."""
    from transformers import T5Tokenizer
    if not (Path(folder) / "spiece.model").exists():
        raise FileNotFoundError(f"no spiece.model in {folder}: save t5-small's tokenizer there")
    return T5Tokenizer.from_pretrained(str(folder), local_files_only=True, legacy=True)


def tokenize_pairs(tokenizer, documents: list[str], summaries: list[str],
                   max_source: int = XSUM_MAX_SOURCE, max_target: int = XSUM_MAX_TARGET):
    """The source's tokenization: documents cut at max_source tokens, summaries (the labels)
    at max_target, both ending with EOS. Returns (document ids, summary ids) as lists."""
    documents, summaries = list(documents), list(summaries)  # a datasets Column is no list
    docs = tokenizer(documents, max_length=max_source, truncation=True)["input_ids"]
    sums = tokenizer(text_target=summaries, max_length=max_target, truncation=True)["input_ids"]
    return docs, sums


def strip_eos(rows: list[list[int]], eos_id: int) -> list[list[int]]:
    """Drop a final EOS from each row (`collate_summaries` appends its own)."""
    return [row[:-1] if row and row[-1] == eos_id else row for row in rows]



# The source's model and optimiser (seed-inventory A1 section 3): 4 + 4 layers, 46.4M
# parameters with t5-small's vocabulary; two epochs of batch 16 (1,521 steps each).
XSUM_MODEL = dict(max_len=XSUM_MAX_SOURCE, n_layers=4, d_model=512, n_heads=8, d_ffn=2048,
                  p_drop=0.1)
XSUM_TRAINING = dict(epochs=2, batch_size=16, lr=1e-4, warmup_ratio=0.1)


@torch.no_grad()
def teacher_forced_loss(module, model, documents: list[list[int]], summaries: list[list[int]],
                        max_source_len: int, max_target_len: int, batch_size: int = 64,
                        device="cpu") -> float:
    """Mean cross-entropy per summary token (EOS included) with `module`'s collate and loss:
    what a validation loss is here. Leaves `model` in eval mode."""
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(documents), batch_size):
        batch = module.collate_summaries(documents[i:i + batch_size], summaries[i:i + batch_size],
                                         model.pad_id, model.eos_id, max_source_len,
                                         max_target_len)
        batch = {k: v.to(device) for k, v in batch.items()}
        logits = model.decode(batch["decoder_input_ids"], *model.encode(batch["input_ids"]))
        n = int(batch["labels"].ne(-100).sum())
        total += module.masked_token_loss(logits, batch["labels"]).item() * n
        count += n
    return total / count


def train_xsum(module, xsum_folder, t5_folder, indices_file=None, *, device=None,
               model_config: dict | None = None, training: dict | None = None,
               limit: int | None = None, progress=None) -> dict:
    """The source's run: `module`'s Transformer and train_summarizer on the XSum subset.

    xsum_folder: `DatasetDict.save_to_disk` of XSum; t5_folder: t5-small's tokenizer files;
    indices_file: the subset (see `load_subset_indices`; None keeps every row). limit: keep
    only the first `limit` rows of each split (for a quick look). progress(step, total, loss)
    is called every step. device: None picks CUDA when it is available, else the CPU.
    Returns {"model", "losses", "validation_losses" (one per epoch), "steps_per_epoch"}."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    config = dict(XSUM_MODEL, **(model_config or {}))
    setting = dict(XSUM_TRAINING, **(training or {}))
    indices = load_subset_indices(indices_file) if indices_file is not None else None
    data = load_xsum_subset(xsum_folder, indices)
    tokenizer = load_t5_tokenizer(t5_folder)
    encoded = {}
    for split in ("train", "validation"):
        rows = data[split] if limit is None else data[split].select(range(min(limit, len(data[split]))))
        docs, sums = tokenize_pairs(tokenizer, rows["document"], rows["summary"])
        encoded[split] = (strip_eos(docs, tokenizer.eos_token_id),
                          strip_eos(sums, tokenizer.eos_token_id))
    steps_per_epoch = len(encoded["train"][0]) // setting["batch_size"]  # drop_last, as the source
    steps = steps_per_epoch * setting["epochs"]
    if steps_per_epoch == 0:
        raise ValueError(f"{len(encoded['train'][0])} training rows: fewer than one batch")
    torch.manual_seed(0)
    model = module.Transformer(len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id,
                               **config)
    validation_losses = []

    def on_step(step, total, loss):
        if progress is not None:
            progress(step, total, loss)
        if step % steps_per_epoch == 0:  # the end of an epoch: the source evaluates here
            validation_losses.append(teacher_forced_loss(
                module, model, *encoded["validation"], XSUM_MAX_SOURCE, XSUM_MAX_TARGET,
                batch_size=setting["batch_size"], device=device))
            model.train()
    losses = module.train_summarizer(
        model, *encoded["train"], steps=steps, batch_size=setting["batch_size"],
        lr=setting["lr"], max_source_len=XSUM_MAX_SOURCE, max_target_len=XSUM_MAX_TARGET,
        warmup=max(1, int(setting["warmup_ratio"] * steps)), device=device, on_step=on_step)
    return {"model": model, "losses": losses, "validation_losses": validation_losses,
            "steps_per_epoch": steps_per_epoch}

if __name__ == "__main__":
    corpus = docstring_corpus()
    splits = corpus_splits(corpus)
    print(json.dumps(corpus_manifest(corpus)), {k: len(v) for k, v in splits.items()},
          file=sys.stdout)
