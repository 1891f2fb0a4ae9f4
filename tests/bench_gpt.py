"""Timings for the `gpt` assignment with the reference solution.

    .venv/bin/python tests/bench_gpt.py [--no-training] [--tokens 200]

1. Generation speed with and without the KV cache: greedy generation of `--tokens` new
   tokens (default 200) from <START> with the cpu profile's model shape (max_N raised to fit),
   batch of one, each way timed in the same run; prints both times and the ratio (target:
   the cache at least 3x faster at 200 tokens), and checks that both give the same tokens.
2. Unless --no-training: the graded training case of the cpu profile run in this process
   (train in "the child" -> weights -> the reference's validation loss), with the held-out
   loss every 25 steps: the time until it first goes below MAX_LOSS, the final loss and the
   total time.
"""
import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dlkit import shakespeare  # noqa: E402
from dlkit.utils import load_assignment  # noqa: E402
from grader import paths  # noqa: E402
from grader.suites import gpt as suite  # noqa: E402

ref = load_assignment("gpt", paths.SOLUTIONS)


def generation(tokens: int) -> None:
    torch.set_num_threads(1)  # a model this small: one thread, steady timings on a busy machine
    torch.manual_seed(0)
    config = suite.model_config(4200, "cpu")
    config["max_N"] = tokens + 1
    model = ref.DialogueGPT(**config).eval()
    start = torch.zeros(1, 1, dtype=torch.long)
    model.generate(start, 5)  # warm-up
    times, outputs = {}, {}
    for use_cache in (False, True):
        began = time.perf_counter()
        outputs[use_cache] = model.generate(start, tokens, use_cache=use_cache)
        times[use_cache] = time.perf_counter() - began
    same = torch.equal(outputs[False], outputs[True])
    print(f"generate {tokens} tokens: without cache {times[False]:.2f} s, with cache "
          f"{times[True]:.2f} s: {times[False] / times[True]:.1f}x faster (target >= 3x); "
          f"same tokens: {same}")


def training() -> None:
    case = suite.suite["train/dialogue_gpt"]
    x = case.inputs(torch.Generator().manual_seed(case.seed(0)))
    data = case.reference(x)["data"]
    p = suite.PROFILES["cpu"]
    config = suite.model_config(int(x["vocab_size"]), "cpu")
    points, state = [], {"eval": 0.0}
    began = time.monotonic()

    def evaluate(step):
        t = time.monotonic()
        loss = shakespeare.evaluate_loss(model, ref.DialogueLoss(), data["ids"], 1)
        state["eval"] += time.monotonic() - t
        points.append((step, time.monotonic() - began - state["eval"], loss))

    with suite.torch_threads(p["threads"]):
        torch.manual_seed(0)
        model = ref.DialogueGPT(**config)
        shakespeare.train_gpt(model, ref.DialogueLoss(), x["train_ids"], 1, steps=p["steps"],
                              batch_size=p["batch_size"], lr=p["lr"], warmup=p["warmup"],
                              progress=False, every=25, on_every=evaluate)
    total = time.monotonic() - began - state["eval"]
    reached = next(((s, t) for s, t, loss in points if loss < suite.MAX_LOSS), None)
    graded = case.evaluate(ref, {k: v.detach() for k, v in model.state_dict().items()}, data,
                           torch.device("cpu")).item()
    where = f"step {reached[0]}, {reached[1]:.1f} s" if reached else "never"
    print(f"train/dialogue_gpt (cpu profile, {p['steps']} steps): below {suite.MAX_LOSS} at "
          f"{where}; final held-out loss {graded:.3f}; {total:.1f} s of training")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-training", action="store_true")
    parser.add_argument("--tokens", type=int, default=200)
    args = parser.parse_args()
    generation(args.tokens)
    if not args.no_training:
        training()


if __name__ == "__main__":
    main()
