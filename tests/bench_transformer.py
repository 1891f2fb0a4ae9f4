"""Timings for `transformer` part two (summarization) with the reference solution.

    .venv/bin/python tests/bench_transformer.py [--no-training] [--set public|autograder]

1. Building the corpus and the SentencePiece tokenizer from scratch (twice, into two fresh
   folders: the two models must be identical, byte for byte).
2. Unless --no-training: the summarization case's training run in this process with the
   suite's settings, the validation loss measured every 50 steps: the step (and seconds) at
   which it first drops below the threshold, the final loss, then greedy summaries of the
   validation documents and their ROUGE against the references.
3. Unless --no-training: the same case graded through the sandbox
   (`python -m grader grade transformer --impl solutions --cases summarize/train`).
"""
import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dlkit import summarize  # noqa: E402
from dlkit.utils import load_assignment  # noqa: E402
from grader import paths  # noqa: E402
from grader.authoring import SETS, case_inputs  # noqa: E402
from grader.suites import transformer as suite  # noqa: E402

ref = load_assignment("transformer", paths.SOLUTIONS)
EVERY = 50


def bench_tokenizer() -> None:
    started = time.monotonic()
    corpus = summarize.docstring_corpus()
    collected = time.monotonic() - started
    models, builds = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("one", "two"):
            started = time.monotonic()
            summarize.build_tokenizer(Path(tmp) / name, corpus)
            builds.append(time.monotonic() - started)
            models.append((Path(tmp) / name / "spm.model").read_bytes())
    manifest = summarize.corpus_manifest(corpus)
    print(f"corpus: {manifest['pairs']} pairs (sha256 {manifest['sha256'][:12]}) collected in "
          f"{collected:.1f} s; tokenizer built in {builds[0]:.1f} s and {builds[1]:.1f} s, "
          f"models {'identical' if models[0] == models[1] else 'DIFFER'}")


def bench_training(which: str) -> None:
    case = suite.suite["summarize/train"]
    p = suite.SUMMARIZE
    x = case_inputs(case, case.seed(SETS[which]))
    data = case.reference(x)["data"]
    docs = summarize.unflatten(x["documents"], x["document_lengths"])
    sums = summarize.unflatten(x["summaries"], x["summary_lengths"])
    torch.manual_seed(0)
    model = ref.Transformer(summarize.VOCAB_SIZE, suite.S_PAD, suite.S_EOS, **p["model"])
    curve, training_time = [], [0.0]
    last = [time.monotonic()]

    def on_step(step, total, loss):
        if step % EVERY == 0 or step == total:
            training_time[0] += time.monotonic() - last[0]
            curve.append((step, training_time[0], suite.summarize_loss(ref, model, data, "cpu")))
            model.train()
            last[0] = time.monotonic()
    ref.train_summarizer(model, docs, sums, steps=p["steps"], batch_size=p["batch_size"],
                         lr=p["lr"], max_source_len=p["max_source_len"],
                         max_target_len=p["max_target_len"], warmup=p["warmup"],
                         seed=int(x["seed"]) % 1000, on_step=on_step)
    crossed = next(((s, t) for s, t, v in curve if v < suite.MAX_SUMMARY_LOSS), None)
    print(f"summarize/train ({which} set, {p['steps']} steps): training {training_time[0]:.1f} s "
          f"(evaluations excluded), validation loss {curve[-1][2]:.3f} (threshold "
          f"{suite.MAX_SUMMARY_LOSS}); " + (f"below it from step {crossed[0]} ({crossed[1]:.1f} s)"
                                           if crossed else "never below it"))
    print("  validation loss every", EVERY, "steps:", " ".join(f"{v:.2f}" for _, _, v in curve))
    valid_docs = summarize.unflatten(data["documents"], data["document_lengths"])
    started = time.monotonic()
    generated = []
    for i in range(0, len(valid_docs), 64):
        batch = ref.collate_summaries(valid_docs[i:i + 64], [[0]] * len(valid_docs[i:i + 64]),
                                      suite.S_PAD, suite.S_EOS, p["max_source_len"],
                                      p["max_target_len"])
        generated += ref.greedy_summarize(model.eval(), batch["input_ids"],
                                          p["max_target_len"]).tolist()
    decoding = time.monotonic() - started
    tokenizer = summarize.load_tokenizer()
    texts = [tokenizer.decode([t for t in row[:row.index(suite.S_EOS)] if t != suite.S_PAD]
                              if suite.S_EOS in row else [t for t in row if t != suite.S_PAD])
             for row in generated]
    references = [pair["summary"] for pair in summarize.corpus_splits()["validation"]]
    scores = summarize.rouge(texts, references)
    print(f"  greedy summaries of {len(texts)} validation documents in {decoding:.1f} s; ROUGE "
          + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))


def bench_sandbox(which: str) -> None:
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "grader", "grade", "transformer", "--impl",
                          "solutions", "--cases", "summarize/train", "--set", which,
                          "--device", "cpu"], cwd=ROOT, capture_output=True, text=True)
    line = next((ln for ln in run.stdout.splitlines() if ln.startswith("summarize/train")), "")
    print(f"grade --cases summarize/train through the sandbox: {time.monotonic() - started:.1f} s"
          f" | {' '.join(line.split())}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-training", action="store_true")
    parser.add_argument("--set", choices=sorted(SETS), default="public")
    args = parser.parse_args()
    torch.set_num_threads(1)
    bench_tokenizer()
    if not args.no_training:
        bench_training(args.set)
        bench_sandbox(args.set)


if __name__ == "__main__":
    main()
