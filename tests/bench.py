"""`make bench`: the numbers the issues ask for, measured in one run on this machine.

    grading time of the transformer suite (reference, without and with training)
    reference MultiheadAttention forward vs torch.nn.MultiheadAttention (B=32, T=128, d=256, 8 heads)
    the sandbox's fixed cost per submission and batch throughput with --jobs 2, in each
    sandbox mode this machine has (namespace, container), then on a Dask LocalCluster
    then every tests/bench_<assignment>.py script

Pass --no-training to skip the training timings (and the per-assignment scripts). Timings are wall clock; the machine is
shared, so compare ratios measured in the same run.
"""
import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from dlkit import load_assignment
from grader import paths
from grader.authoring import mutants, write_mutant
from grader.batch import grade_all
from grader import zygote
from grader.grade import grade, inputs_and_expected
from grader.sandbox import Limits, run_cases, sandbox_mode
from grader.suites import load_suite


def timed(fn, repeat: int = 1) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def bench_grading(training: bool) -> None:
    cold, graded = timed(lambda: grade("transformer", "solutions", device="cpu", training=False))
    warm, graded = timed(lambda: grade("transformer", "solutions", device="cpu", training=False), 3)
    cli, _ = timed(lambda: subprocess.run(
        [sys.executable, "-m", "grader", "grade", "transformer", "--impl", "solutions",
         "--no-training", "--device", "cpu"], capture_output=True, check=True))
    print(f"grade transformer (reference, {len(graded.verdicts)} cases, no training): "
          f"{warm:.2f} s warm, {cold:.2f} s with sandbox start-up, {cli:.2f} s as a fresh "
          f"`python -m grader` command   [target < 10 s]   score {graded.score:g}/{graded.max_score:g}")
    if training:
        seconds, result = timed(lambda: grade("transformer", "solutions", device="cpu",
                                              cases=["train/arithmetic"]))
        (v,) = result.verdicts
        print(f"training case train/arithmetic: {seconds:.1f} s, {v.message}")


def bench_attention() -> None:
    T = load_assignment("transformer", paths.SOLUTIONS)
    torch.manual_seed(0)
    B, L, d, h = 32, 128, 256, 8
    ours = T.MultiheadAttention(d, h).eval()
    ref = torch.nn.MultiheadAttention(d, h, batch_first=True).eval()
    x = torch.randn(B, L, d)
    with torch.no_grad():
        for _ in range(3):  # warm-up
            ours(x, x, x)
            ref(x, x, x, need_weights=False)
        t_ours, _ = timed(lambda: ours(x, x, x), 20)
        t_ref, _ = timed(lambda: ref(x, x, x, need_weights=False), 20)
    print(f"MultiheadAttention forward B={B} T={L} d={d} heads={h}: reference {1e3 * t_ours:.1f} ms, "
          f"torch.nn {1e3 * t_ref:.1f} ms, ratio {t_ours / t_ref:.2f}x   [target < 1.5x]")


def modes() -> list[str]:
    """The sandbox modes that work here (container mode needs root)."""
    return [m for m in ("namespace", "container") if not sandbox_mode(Limits(mode=m)).problem]


def bench_batch(count: int = 24) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        submissions, names = [], list(mutants("transformer"))
        for i in range(count):
            folder = tmp / f"student{i:03d}"
            if i % 3 == 0:
                write_mutant("transformer", names[i % len(names)], folder)
            else:
                folder.mkdir()
                source = paths.SOLUTIONS if i % 3 == 1 else paths.ASSIGNMENTS
                shutil.copy(source / "transformer.py", folder)
            submissions.append(folder)
        seconds = None
        for mode in modes():  # grading alone: the class report is a cost per batch, timed below
            seconds, _ = timed(lambda: grade_all(submissions, "transformer", tmp / mode, jobs=2,
                                                 training=False, progress=False,
                                                 limits=Limits(mode=mode), class_report=False))
            print(f"batch, {mode} mode: {count} transformer submissions (reference, skeleton, "
                  f"known mistakes) with --jobs 2 in {seconds:.1f} s = "
                  f"{60 * count / seconds:.0f} per minute   [target >= 250]")
        with_report, _ = timed(lambda: grade_all(submissions, "transformer", tmp / "report",
                                                 jobs=2, training=False, progress=False,
                                                 resume=False))
        print(f"batch with its class report (report.html, copydetect over {count} "
              f"submissions): {with_report:.1f} s"
              + (f", the report {with_report - seconds:.1f} s of it" if seconds else ""))
        on_dask, _ = timed(lambda: grade_all(submissions, "transformer", tmp / "dask",
                                             training=False, progress=False,
                                             scheduler="local:2"))
        print(f"batch: the same on a Dask LocalCluster (--scheduler local:2 over TLS, cluster "
              f"start-up included) in {on_dask:.1f} s = {60 * count / on_dask:.0f} per minute"
              + (f": {on_dask / seconds:.2f}x the time of --jobs 2" if seconds else ""))


def bench_sandbox_cost(repeat: int = 5) -> None:
    """A worker forked from a warm zygote: start (uid, job folder, cgroup, fork), check
    isolation, import the module, one trivial case, tear down (kill, clean, free); against
    the same with a fresh zygote, which is what every worker cost before (torch's import)."""
    case = load_suite("transformer")["tokens/token_dict"]
    inputs, _ = inputs_and_expected("transformer", "public")
    module = paths.SOLUTIONS / "transformer.py"
    jobs = [(case, inputs[case.name])]
    for mode in modes():
        limits = Limits(mode=mode)

        def fresh():
            zygote.stop_all()
            return run_cases("transformer", module, jobs, limits=limits)
        cold, _ = timed(fresh, 2)
        warm, result = timed(lambda: run_cases("transformer", module, jobs, limits=limits), repeat)
        assert result[case.name].error is None, result[case.name].error
        print(f"sandbox fixed cost per submission, {mode} mode: {1e3 * warm:.0f} ms forked from "
              f"a warm zygote, {1e3 * cold:.0f} ms with a fresh one ({cold / warm:.1f}x)   "
              f"[target <= 250 ms]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-training", action="store_true")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    bench_grading(training=not args.no_training)
    bench_attention()
    bench_sandbox_cost()
    bench_batch()
    if args.no_training:
        return
    for script in sorted(Path(__file__).parent.glob("bench_*.py")):
        print(f"\n== {script.name} ==", flush=True)
        subprocess.run([sys.executable, str(script)], check=False)


if __name__ == "__main__":
    main()
