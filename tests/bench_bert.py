"""Timings for the `bert` assignment with the reference solution.

    .venv/bin/python tests/bench_bert.py [--no-training] [--set public|autograder]

1. Loading the pretrained MiniLM, and its forward pass over 256 speeches (32 tokens).
2. Wall time of `python -m grader grade bert --impl solutions --no-training`.
3. Unless --no-training: the training case of the cpu profile run in this process with the
   suite's own settings (fine-tuning time, held-out accuracy), and the same evaluation of
   an untrained head, the baseline the threshold must stay above.
"""
import argparse
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dlkit import bert_data  # noqa: E402
from dlkit.utils import load_assignment  # noqa: E402
from grader import paths  # noqa: E402
from grader.authoring import SETS, case_inputs  # noqa: E402
from grader.cases import judge  # noqa: E402
from grader.suites import bert as suite  # noqa: E402

ref = load_assignment("bert", paths.SOLUTIONS)


def bench_minilm(n: int = 256) -> None:
    started = time.perf_counter()
    model, tokenizer = bert_data.load_minilm("sdpa")
    loading = time.perf_counter() - started
    texts, _ = bert_data.genre_sample("train", n, torch.Generator().manual_seed(0))
    ids = bert_data.encode(tokenizer, texts, 32)
    started = time.perf_counter()
    with torch.no_grad():
        for text, _ in bert_data.batches(ids, torch.zeros(n), 32):
            model(text)
    forward = time.perf_counter() - started
    print(f"MiniLM: loaded in {loading:.1f} s; forward over {n} speeches ({ids.shape[1]} "
          f"tokens at most) {forward:.1f} s ({n / forward:.0f} per second)")


def bench_grading() -> None:
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "grader", "grade", "bert", "--impl", "solutions",
                    "--no-training", "--device", "cpu"], cwd=ROOT, check=True,
                   capture_output=True)
    print(f"grade bert --impl solutions --no-training: {time.monotonic() - started:.1f} s")


def bench_training(which: str) -> None:
    case = suite.suite["train/genre_beats_chance"]
    p = suite.PROFILES["cpu"]
    inputs = case_inputs(case, case.seed(SETS[which]))
    expected = case.reference(inputs)
    cpu = torch.device("cpu")
    started = time.monotonic()
    weights = case.call(ref, inputs, cpu)
    training = time.monotonic() - started
    started = time.monotonic()
    verdict = judge(case, case.evaluate(ref, weights, expected["data"], cpu), expected["labels"])
    evaluation = time.monotonic() - started
    print(f"train/genre_beats_chance ({which} split, {p['n_train']} speeches, {p['epochs']} "
          f"epochs): fine-tuning {training:.1f} s, evaluation {evaluation:.1f} s; "
          f"{verdict.message}")
    torch.manual_seed(p["seed"])
    untrained = suite.head_weights(ref.BERTGRUSentiment(bert_data.load_minilm("sdpa")[0],
                                                        **p["model"]))
    baseline = judge(case, case.evaluate(ref, untrained, expected["data"], cpu),
                     expected["labels"])
    print(f"  the untrained head: held-out accuracy {baseline.error:.3f} (must stay below "
          f"{case.min_accuracy}; majority class 0.5)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-training", action="store_true")
    parser.add_argument("--set", choices=sorted(SETS), default="public")
    args = parser.parse_args()
    torch.set_num_threads(1)
    bench_minilm()
    bench_grading()
    if not args.no_training:
        bench_training(args.set)


if __name__ == "__main__":
    main()
