"""Shared by the project's tests: grade an implementation (in the sandbox, or judged in
this process from the stored fixtures), run the command line, open a page in Chromium."""
import contextlib
import dataclasses
import fcntl
import functools
import json
import math
import subprocess
import sys
from pathlib import Path

import torch

from grader import authoring, cgroups, isolation, paths, reach
from grader.audit import audit, judged, load_implementations, run_here
from grader.authoring import one_thread, write_variant
from grader.cases import Verdict, explain, only_tensors
from grader.grade import grade, inputs_and_expected
from grader.sandbox import Limits, plain
from grader.suites import available, load_suite

ROOT = paths.ROOT
ASSIGNMENTS = [a for a in available() if (paths.SOLUTIONS / f"{a}.py").is_file()]
FIXTURE_SETS = ("public", "autograder")


@functools.cache
def graded(assignment: str, impl: str, which: str = "auto"):
    """Grade in the sandbox, without training, once per session (grading is deterministic)."""
    return grade(assignment, impl, device="cpu", which=which, training=False)


def graded_variant(assignment: str, kind: str, name: str, which: str, tmp: Path):
    """A mutant's or an equivalent's verdicts through the sandbox, on one fixture set, with
    torch on one thread as `Proof` runs it: the same rounding, so even which of two equally
    wrong outputs a message names is the same."""
    write_variant(assignment, name, tmp / name, kind)
    return grade(assignment, str(tmp / name), device="cpu", which=which, training=False,
                 limits=Limits(threads=1))


class Proof:
    """One assignment proven from both sides in this process, each piece computed once.

    The reference, every equivalent and every mutant are imported once (instructor code);
    each is judged on a stored fixture set case by case, as `grade` judges a sandboxed run
    (`grader.audit.judged`: the expected values, and the stored outputs of the known mistakes
    to name one); the audit on fresh seeds reuses the same modules. A variant runs only the
    cases that call a function it rewrites, and takes the reference's run of the others
    (`grader.reach`); with `every_case` (make test-full) it runs every case."""

    def __init__(self, assignment: str, folder: Path, shared: Path, every_case: bool = False):
        self.assignment = assignment
        self.implementations = load_implementations(assignment, folder)
        self.cases = load_suite(assignment).select(None, training=False)
        self.shared = shared
        self.every_case = every_case

    @functools.cache
    def fixture_set(self, which: str) -> tuple[dict, dict]:
        return inputs_and_expected(self.assignment, which)

    @functools.cache
    def reference_runs(self, which: str) -> dict:
        """{case: (`run_here`'s result, the functions it called)} of the reference on the
        fixture set `which`, run once for every test and xdist worker of this session."""
        reference, inputs = self.implementations.reference, self.fixture_set(which)[0]

        def recorded(case) -> tuple:
            return reach.called(reference,
                                lambda: storable(run_here(case, reference, inputs[case.name])))

        def run() -> dict:
            with one_thread():
                return {case.name: recorded(case) for case in self.cases if case.name in inputs}
        return once(self.shared, f"ran-{self.assignment}-reference-{which}", run)

    @functools.cache
    def ran(self, kind: str, name: str, which: str) -> dict:
        """{case: `run_here`'s (outputs, error, changed)} of the equivalent or mutant `name`
        on the fixture set `which`: its verdicts read it, and a mutant's is run once for every
        test and xdist worker of this session (the fixture check reads its outputs too). A
        case whose run cannot depend on the seed (`Case.seeded=False`) runs on the public set
        only, and the other set and the audit read that run (not with `every_case`)."""
        def run() -> dict:
            module = getattr(self.implementations, kind)[name][1]
            inputs, reference = self.fixture_set(which)[0], self.reference_runs(which)
            found = {}
            with one_thread():  # many small kernels: much faster than contended threads
                for case in self.cases:
                    if case.name not in inputs:
                        found[case.name] = (None, "no stored inputs (stale fixtures)", None)
                    elif not (case.seeded or which == "public" or self.every_case):
                        found[case.name] = self.ran(kind, name, "public")[case.name]
                    else:
                        found[case.name] = (self.implementations.reused(
                            name, *reference[case.name], self.every_case)
                            or storable(run_here(case, module, inputs[case.name])))
            return found
        if kind != "mutants":  # only the mutants' runs have a second reader
            return run()
        return once(self.shared, f"ran-{self.assignment}-{kind}-{name}-{which}", run)

    @functools.cache
    def verdicts(self, kind: str, name: str, which: str) -> list:
        """Verdicts of the equivalent or mutant `name` (kind "equivalents" or "mutants") on
        the fixture set `which`, one per non-training case, in the suite's order."""
        module = getattr(self.implementations, kind)[name][1]
        inputs, fixtures = self.fixture_set(which)
        ran = self.ran(kind, name, which)
        return explain(load_suite(self.assignment), [
            judged(case, module, inputs[case.name], fixtures[case.name],
                   self.implementations.shortcuts[name], ran[case.name])
            for case in self.cases])

    def fixtures_in_sync(self) -> list[str]:
        """The fixture files that differ from a rebuild; the mutants' outputs are this
        session's runs on the stored inputs (the rebuilt inputs must equal those)."""
        stale, _ = authoring.fixtures(  # the fixture sets are named as authoring.SETS
            self.assignment, check=True,
            ran=lambda set_name, case, mutant: self.ran("mutants", mutant, set_name)[case])
        return stale

    @functools.cache
    def audit(self, seeds: int):
        def public_run(name: str, case) -> tuple:  # the audit asks for unseeded cases only
            kind = "mutants" if name in self.implementations.mutants else "equivalents"
            return self.ran(kind, name, "public")[case.name]
        return audit(self.assignment, seeds=seeds, implementations=self.implementations,
                     every_case=self.every_case, made=None if self.every_case else public_run)


def storable(ran: tuple) -> tuple:
    """A `run_here` result that torch.save keeps: outputs of tensors only as they are (the
    fixtures store those), anything else as the sandbox would send it."""
    outputs, error, changed = ran
    return (outputs if only_tensors(outputs) else plain(outputs)), error, changed


def assert_same_verdicts(sandboxed: list, in_process: list) -> None:
    """Identical verdicts, case by case; errors may differ by rounding (other thread counts)."""
    assert [v.name for v in sandboxed] == [v.name for v in in_process]
    for got, want in zip(sandboxed, in_process):
        assert dataclasses.replace(got, error=None) == dataclasses.replace(want, error=None), \
            (got, want)
        assert (got.error is None) == (want.error is None), got.name
        if got.error is not None:
            assert math.isclose(got.error, want.error, rel_tol=1e-6,
                                abs_tol=(got.tol or 0.0) / 100), (got.name, got.error, want.error)


@contextlib.contextmanager
def busy_processes(count: int):
    """`count` processes that each keep one core busy while the block runs."""
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for process in busy:
            process.kill()
            process.wait()


def once(cache: Path, key: str, compute):
    """compute() (any value torch.save keeps), run once for every test (and every xdist
    worker) sharing `cache`: a second caller waits for the first, then reads its result."""
    saved = cache / f"{key}.pt"
    with open(cache / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not saved.is_file():
            torch.save(compute(), saved)
        return torch.load(saved, weights_only=False)  # written by this test run


@contextlib.contextmanager
def recorded_run_uids():
    """Yields the set of per-run uids the sandbox's workers get while the block runs."""
    got, allocate = set(), isolation.RunUid.__init__

    def recording(self):
        allocate(self)
        got.add(self.uid)
    isolation.RunUid.__init__ = recording
    try:
        yield got
    finally:
        isolation.RunUid.__init__ = allocate


# A transformer submission's `sinusoidal_positions` that never returns, asleep: the time
# limits are wall-clock time, and a spinning loop (the corpus's infinite_loop) would take a
# core from the other tests for the whole limit.
NEVER_RETURNS = ("\n\ndef sinusoidal_positions(num_positions, d_model):\n    while True:\n"
                 "        __import__('time').sleep(1)\n")


HELD_SHARE = 2 / 3  # of a core: what a 2-core machine leaves a case beside two busy ones


def sandbox_trained(assignment: str, case: str, busy: int, cache: Path):
    """The reference's verdict on one training case through the sandbox, run once for every
    test (and every xdist worker) that shares `cache`: beside `busy` busy processes, or, with
    none, its worker held to HELD_SHARE of a core by its cgroup (the same slowdown as two
    busy processes on this machine, without burning the cores the other tests need)."""
    held = busy == 0 and cgroups.controls("cpu")

    def train() -> str:
        limits = Limits(cpu_share=HELD_SHARE) if held else None
        with busy_processes(busy):
            (verdict,) = grade(assignment, "solutions", device="cpu", cases=[case],
                               limits=limits).verdicts
        return json.dumps(dataclasses.asdict(verdict))
    key = f"trained-{assignment}-{case.replace('/', '-')}-" + ("held" if held else f"busy{busy}")
    return Verdict(**json.loads(once(cache, key, train)))


def cli(*args: str, timeout: float = 600, cwd=ROOT, env=None) -> subprocess.CompletedProcess:
    """`python -m grader ARGS`, as a user would run it."""
    return subprocess.run([sys.executable, "-m", "grader", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def assert_gradescope_schema(data: dict) -> None:
    """The fields Gradescope reads, with the types it expects."""
    assert isinstance(data["score"], (int, float))
    assert isinstance(data["execution_time"], (int, float))
    assert isinstance(data["tests"], list)
    for test in data["tests"]:
        assert isinstance(test["name"], str) and test["name"]
        assert isinstance(test["score"], (int, float)) and isinstance(test["max_score"], (int, float))
        assert 0 <= test["score"] <= test["max_score"]
        assert test["status"] in ("passed", "failed")
        assert isinstance(test["output"], str)
        assert test["visibility"] in ("hidden", "after_due_date", "after_published", "visible")
    assert abs(data["score"] - sum(t["score"] for t in data["tests"])) < 1e-9


def browser() -> str | None:
    """The headless browser `make install` provides (Debian's chromium), if any."""
    import shutil
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser",
                                                "google-chrome"))), None)


def headless(page: Path, *args: str, tmp: Path) -> subprocess.CompletedProcess:
    """Open `page` in headless Chromium, offline and with a fresh profile, with `args`
    (`--dump-dom`, `--screenshot=FILE`)."""
    return subprocess.run(
        [browser(), "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={tmp / 'chromium-profile'}", *args,
         page.resolve().as_uri()], capture_output=True, text=True, timeout=120)
