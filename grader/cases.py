"""Checking: what a graded case is, and how its outputs are validated and compared.

A `Case` names how to build its inputs (deterministically, from a seeded generator), how to
call the code under test (`call(module, inputs, device)`), and how to judge the outputs.
Everything that judges runs in the trusted parent; `call` is the only part that runs next to
student code, in the sandboxed child.
"""
import math
import zlib
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import torch


Outputs = Any  # a tensor, or a dict / tuple / list of tensors


@dataclass
class Verdict:
    """How one case went: what the report and results.json show."""
    name: str
    points: float
    max_points: float
    passed: bool
    message: str
    error: float | None = None     # scaled error; for training cases the accuracy or the loss
    tol: float | None = None
    measure: str = "error"         # what `error` holds: error | accuracy | loss
    todo: bool = False             # the part raised NotImplementedError: not started yet
    mistake: str = ""              # the name of the known mistake the outputs match, if any

    @property
    def status(self) -> str:
        return "pass" if self.passed else "TODO" if self.todo else "FAIL"


@dataclass
class Property:
    """A relation the outputs must satisfy, checked in the parent (e.g. causality)."""
    holds: Callable[[Outputs], bool]
    message: str  # shown when it does not hold: names the likely mistake
    name: str = ""  # e.g. "causal", "rows sum to 1": named in the failure message


@dataclass
class Case:
    """One graded check.

    name: "part/what" (unique in its suite). points: its weight.
    inputs(g): builds a dict of inputs from a seeded torch.Generator, on the CPU.
    call(module, inputs, device): runs the code under test, returns tensors.
    reference(inputs): training cases only: the held-out data (and labels) the trained
        weights are scored on, split off in the trusted parent. Expected values that should
        not come from the solution's `call` (a formula, `torch.nn.MultiheadAttention`) are
        the case's oracle in `solutions/<a>_oracles.py`, never part of the suite.
    source_inputs(): the source homework's own example (e.g. modules built right after
        `torch.manual_seed(42)`), replayed in the public set so that its printed values
        are reproduced; the autograder set and audits build `inputs(g)`, the same
        construction under other seeds.
    tol: tolerance on `scaled_error` (max |got - expected| over the largest |expected| of
        that output) for floating outputs; integer and bool outputs must be exact.
    min_accuracy: for training cases: `call` trains in the child and returns the model's
        state_dict; `evaluate(reference_module, weights, data, device)` then runs in a
        separate sandbox that never imports the student's module and returns predictions
        (N,) or (N, L), scored against held-out labels; a row counts when all of it matches.
        `reference(inputs)` gives {"data": held-out inputs, "labels": their labels}.
    max_loss: for training cases whose `evaluate` returns a loss (a float64 scalar) of the
        trained weights on the data they were fit to (overfitting a small set): it must be
        below this. `reference(inputs)` gives {"data": ...}.
    min_scores: for training cases whose `evaluate` returns named held-out scores (a dict
        of float64 scalars, e.g. {"mean IoU, first frame": ...}): each must reach its
        threshold here (a dict with the same names). `reference(inputs)` gives {"data": ...}.
    properties: relations checked on the outputs in addition to the comparison.
    gpu_reference(), gpu_min_accuracy: for training cases with a gpu profile (chosen when
        grading on CUDA): the held-out labels, read by the parent (None when the data is
        absent, and the cpu profile's fixture applies), and that profile's threshold.
    seeded: False where no verdict can depend on the seed: inputs of the same shapes every
        seed, run where tensors hold no values (the meta device). The audit runs such a case
        on its first fresh seed only; tests/test_cases.py checks the shapes.
    hint: one line shown on failure. time_limit: seconds for this case in the sandbox (a
        backstop on the clock: at least 10x the case's idle time).
    cpu_time: training cases (and cases that train inside): the CPU seconds the case may use
        in the sandbox. Such cases run on one torch thread for a fixed number of steps, so
        their CPU time does not depend on the machine's load while their wall time does:
        this limit, not `time_limit`, is the one that ends a runaway training loop. It applies
        on the CPU only: graded on a GPU, the process spins on a core while it waits for the
        device (and the gpu profiles do other work), so `time_limit` alone applies there.
    """
    name: str
    points: float
    inputs: Callable[[torch.Generator], dict]
    call: Callable[[Any, dict, torch.device], Outputs]
    reference: Callable[[dict], Outputs] | None = None
    source_inputs: Callable[[], dict] | None = None
    tol: float = 1e-5
    min_accuracy: float | None = None
    max_loss: float | None = None
    min_scores: dict[str, float] | None = None
    properties: list[Property] = field(default_factory=list)
    evaluate: Callable[[Any, dict, dict, torch.device], Outputs] | None = None
    gpu_reference: Callable[[], Outputs | None] | None = None
    gpu_min_accuracy: float | None = None
    hint: str = ""
    time_limit: float = 30.0
    cpu_time: float | None = None
    seeded: bool = True

    @property
    def is_training(self) -> bool:
        return (self.min_accuracy is not None or self.max_loss is not None
                or self.min_scores is not None)

    @property
    def measure(self) -> str:
        """What a verdict's `error` holds: error | accuracy | loss | score."""
        if not self.is_training:
            return "error"
        if self.max_loss is not None:
            return "loss"
        return "score" if self.min_scores is not None else "accuracy"

    def seed(self, base: int) -> int:
        """The generator seed of this case in a fixture set with seed `base`."""
        return base + zlib.crc32(self.name.encode()) % 100_000


def matches(name: str, patterns) -> bool:
    """True when `name` is one of `patterns` or starts with one ending in "/"."""
    return any(name == p or (p.endswith("/") and name.startswith(p)) for p in patterns)


@dataclass(frozen=True)
class Dependency:
    """Cases that run a part the student wrote, graded on its own cases first."""
    cases: tuple
    part: str
    own_cases: tuple


class Suite:
    """The ordered cases of one assignment, defined once and used everywhere, and its
    library-shortcut policy (`ban`: see grader/policy.py)."""

    def __init__(self, assignment: str):
        self.assignment = assignment
        self.cases: dict[str, Case] = {}
        # Gradescope visibility per case name or part prefix ("train/"), e.g.
        # {"train/": "after_due_date"}; cases not named are "visible" (grader/report.py).
        self.visibility: dict[str, str] = {}
        self.shortcuts: list = []
        self.dependencies: list[Dependency] = []

    def builds_on(self, cases, part: str, own_cases) -> None:
        """The cases in `cases` (names, or prefixes ending in "/") run the student's `part`,
        whose own cases are `own_cases`: when one of those fails, a failing case of `cases`
        says so ("uses your `attention`, which fails attention/source: fix that first")."""
        self.dependencies.append(Dependency(tuple(cases), part, tuple(own_cases)))

    def ban(self, part: str, calls, cases) -> None:
        """The library calls that would do `part`'s work (dotted names, or bare option
        words): a case in `cases` (names, or prefixes ending in "/") loses its points when
        the part uses one."""
        from grader.policy import Shortcut
        self.shortcuts.append(Shortcut(part, tuple(calls), tuple(cases)))

    def shortcuts_for(self, case_name: str) -> list:
        """The banned-call lists of the parts this case grades."""
        return [s for s in self.shortcuts if s.grades(case_name)]

    def add(self, case: Case) -> Case:
        if case.name in self.cases:
            raise ValueError(f"duplicate case name {case.name!r} in suite {self.assignment}")
        self.cases[case.name] = case
        return case

    def __iter__(self):
        return iter(self.cases.values())

    def __getitem__(self, name: str) -> Case:
        try:
            return self.cases[name]
        except KeyError:
            known = ", ".join(self.cases)
            raise KeyError(f"no case {name!r} in {self.assignment}; known cases: {known}") from None

    def select(self, names=None, training: bool = True) -> list[Case]:
        """Cases in order, optionally only `names`, optionally without training cases."""
        unknown = [n for n in names or () if n not in self.cases]
        if unknown:
            raise ValueError(f"no case {unknown[0]!r} in {self.assignment}; "
                             f"known cases: {', '.join(self.cases)}")
        chosen = [self[n] for n in names] if names else list(self)
        return [c for c in chosen if training or not c.is_training]

    @property
    def max_points(self) -> float:
        return sum(c.points for c in self)


# ---------------------------------------------------------------------------------------
# Validation: done on untrusted outputs before any arithmetic touches them
# ---------------------------------------------------------------------------------------

def describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    return f"a {type(value).__name__}"


def validate(got, expected, where: str = "output", finite: bool = True) -> str | None:
    """None if `got` has exactly the structure, types, dtypes and shapes of `expected`.

    Otherwise one line saying what is wrong. Tensors must be exactly `torch.Tensor` (no
    subclasses) and, unless `finite=False`, floating tensors must be finite.
    """
    if isinstance(expected, torch.Tensor):
        if type(got) is not torch.Tensor:
            if isinstance(got, dict) and "__not_a_tensor__" in got:
                return f"{where}: expected a tensor, got {got['__not_a_tensor__']}"
            return f"{where}: expected a torch.Tensor, got {describe(got)}"
        if got.dtype != expected.dtype:
            return f"{where}: dtype {got.dtype}, expected {expected.dtype}"
        if got.shape != expected.shape:
            return f"{where}: shape {tuple(got.shape)}, expected {tuple(expected.shape)}"
        if finite and got.is_floating_point() and not torch.isfinite(got).all():
            return f"{where}: contains NaN or Inf"
        return None
    if isinstance(expected, dict):
        if type(got) is not dict:
            return f"{where}: expected a dict with keys {sorted(expected)}, got {describe(got)}"
        if set(got) != set(expected):
            return f"{where}: keys {sorted(map(str, got))}, expected {sorted(expected)}"
        for key in expected:
            problem = validate(got[key], expected[key], f"{where}[{key!r}]", finite)
            if problem:
                return problem
        return None
    if isinstance(expected, (tuple, list)):
        if type(got) not in (tuple, list) or len(got) != len(expected):
            return f"{where}: expected a sequence of {len(expected)} tensors, got {describe(got)}"
        for i, (g, e) in enumerate(zip(got, expected)):
            problem = validate(g, e, f"{where}[{i}]", finite)
            if problem:
                return problem
        return None
    raise TypeError(f"fixture holds an unsupported expected value: {type(expected).__name__}")


def only_tensors(value) -> bool:
    """True for a tensor, or dicts, lists and tuples of nothing but tensors."""
    if isinstance(value, torch.Tensor):
        return True
    if isinstance(value, dict):
        return all(only_tensors(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(only_tensors(v) for v in value)
    return False


def leaves(value, where: str = "") -> list[tuple[str, torch.Tensor]]:
    """(name, tensor) of every tensor in a validated output, in a fixed order.

    Names read like the student's return value: `db`, `[1]`, `weights[0]`; "" for a lone tensor.
    """
    if isinstance(value, torch.Tensor):
        return [(where, value)]
    if isinstance(value, dict):
        return [item for key in sorted(value)
                for item in leaves(value[key], f"{where}.{key}" if where else str(key))]
    return [item for i, v in enumerate(value) for item in leaves(v, f"{where}[{i}]")]


# The tolerance policy, stated in every failure of a numeric comparison: each tolerance sits
# 100x above the worst error of correct code (float32 constants and intermediates included
# where the contract allows them) and 100x below the error of every known mistake where
# possible; `python -m grader audit` fails when either margin is under 10x.
POLICY = "correct code, float32 steps included, stays 100x below it"
SCALE_FLOOR = 1e-6  # below this an output counts as zero: errors are measured absolutely


def scaled_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    """max |got - expected| / max(max |expected|, 1e-6), on the CPU in float64.

    The error is measured against the scale of the whole tensor, not element by element:
    rounding next to zero (-6.62e-05 against -6.62e-05) is not a mistake, while a wrong
    formula moves values by a sizeable fraction of the tensor's scale.
    """
    g = got.detach().to("cpu", torch.float64)
    e = expected.detach().to("cpu", torch.float64)
    if e.numel() == 0:
        return 0.0
    return ((g - e).abs().max() / e.abs().max().clamp_min(SCALE_FLOOR)).item()


@dataclass
class Difference:
    """The worst output of a case: its error and where it is."""
    error: float
    where: str = ""
    detail: str = ""   # for exact outputs: how many values differ

    def describe(self, tol: float) -> str:
        name = f"{self.where}: " if self.where else ""
        if self.detail:
            return f"{name}{self.detail} (must match exactly)"
        return f"{name}error {self.error:.2e} > tolerance {tol:.0e} ({POLICY})"


def difference(got, expected) -> Difference:
    """The worst output's error: `scaled_error` for floating outputs; integer and bool
    outputs count 0 or 1 (they must be exact).

    NaN or Inf in the same places on both sides count as equal (a known mistake may produce
    them); anywhere else they count as the maximal error, 1.
    """
    worst = Difference(0.0)
    for (where, g), (_, e) in zip(leaves(got), leaves(expected)):
        if not e.is_floating_point():
            wrong = int((g != e).sum()) if g.shape == e.shape else e.numel()
            found = Difference(1.0 if wrong else 0.0, where,
                               f"{wrong} of {e.numel()} values differ" if wrong else "")
        else:
            finite = torch.isfinite(g) & torch.isfinite(e)
            same = (g == e) | (g.isnan() & e.isnan())
            if not (finite | same).all():
                found = Difference(1.0, where, "NaN or Inf where the expected values are finite")
            else:
                found = Difference(scaled_error(g[finite], e[finite]), where)
        if found.error > worst.error or math.isnan(found.error):
            worst = found
    return worst


def distance(got, expected) -> float:
    """The worst error over all outputs (see `difference`)."""
    return difference(got, expected).error


def judge(case: Case, got, expected, mutants: dict | None = None,
          min_accuracy: float | None = None) -> Verdict:
    """Score one case from untrusted `got` against the fixture's `expected`.

    `min_accuracy` overrides the case's threshold (the gpu profile's)."""
    measure = case.measure

    def fail(message, error=None, mistake=None):
        return Verdict(case.name, 0.0, case.points, False, message, error,
                       None if case.is_training else case.tol, measure,
                       mistake=mistake[0] if mistake else "")

    problem = validate(got, expected)
    if problem:
        known = diagnose(got, mutants or {}, case.tol)  # mistakes of shape or dtype too
        if known:
            return fail(f"{problem}: looks like a known mistake: {known[1]}", mistake=known)
        non_finite = problem.endswith("contains NaN or Inf") and case.hint
        return fail(f"{problem}; hint: {case.hint}" if non_finite else problem)
    if case.max_loss is not None:
        loss = got.item()
        message = f"loss of the trained weights {loss:.3f} (needs < {case.max_loss})"
        if not loss < case.max_loss:
            return fail(message + (f"; {case.hint}" if case.hint else ""), loss)
        return Verdict(case.name, case.points, case.points, True, message, loss, None, measure)
    if case.min_scores is not None:
        scores = {name: got[name].item() for name in case.min_scores}
        message = ", ".join(f"{name} {value:.3f} (needs >= {case.min_scores[name]})"
                            for name, value in scores.items())
        low = [name for name, value in scores.items() if not value >= case.min_scores[name]]
        if low:
            return fail(message + (f"; {case.hint}" if case.hint else ""), scores[low[0]])
        return Verdict(case.name, case.points, case.points, True, message,
                       min(scores.values()), None, measure)
    if case.is_training:
        matches = got.eq(expected)
        if matches.dim() > 1:  # a row (a sequence) counts only when all of it is right
            matches = matches.flatten(1).all(dim=1)
        accuracy = matches.float().mean().item()
        threshold = case.min_accuracy if min_accuracy is None else min_accuracy
        message = f"held-out accuracy {accuracy:.3f} (needs >= {threshold})"
        if accuracy < threshold:
            return fail(message + (f"; {case.hint}" if case.hint else ""), accuracy)
        return Verdict(case.name, case.points, case.points, True, message, accuracy, None,
                       measure)
    worst = difference(got, expected)
    if not worst.error <= case.tol or math.isnan(worst.error):
        known = diagnose(got, mutants or {}, case.tol)
        if known:
            return fail(f"{worst.describe(case.tol)}: looks like a known mistake: {known[1]}",
                        worst.error, known)
        broken = failed_property(case, got)
        if broken:
            return fail(f"{worst.describe(case.tol)}; {broken}", worst.error)
        return fail(worst.describe(case.tol) + (f"; hint: {case.hint}" if case.hint else ""),
                    worst.error)
    broken = failed_property(case, got)
    if broken:
        return fail(broken, worst.error)
    return Verdict(case.name, case.points, case.points, True, "", worst.error, case.tol)


def failed_property(case: Case, got) -> str | None:
    """'property <name> fails: <message>' for the first property that does not hold."""
    for prop in case.properties:
        try:
            holds = bool(prop.holds(got))
        except Exception:  # noqa: BLE001 - a property of odd outputs simply fails
            holds = False
        if not holds:
            return f"property {prop.name!r} fails: {prop.message}" if prop.name else prop.message
    return None


MAX_NAMED = 2  # outputs that more known mistakes produce alike name none of them


def diagnose(got, mutants: dict, tol: float) -> tuple[str, str] | None:
    """(name, description) of the known mistake whose outputs match `got`; when two produce
    these outputs alike (a mistake in a part the case builds on, and one in its own part),
    both, names joined by " or " and descriptions by "; or: "."""
    matches = [(name, mutant["description"]) for name, mutant in mutants.items()
               if validate(got, mutant["outputs"], finite=False) is None
               and distance(got, mutant["outputs"]) <= tol]
    if not 0 < len(matches) <= MAX_NAMED:
        return None
    return " or ".join(n for n, _ in matches), "; or: ".join(d for _, d in matches)


# ---------------------------------------------------------------------------------------
# Inputs left as they were: the code under test must not change what it was given
# ---------------------------------------------------------------------------------------

CHANGES_INPUT = "changes its input in place"


def input_tensors(value, where: str = "") -> list[tuple[str, torch.Tensor]]:
    """(name, tensor) of every tensor among a case's inputs, in a fixed order (dict keys
    sorted); strings, numbers and other values are left out (they cannot change in place)."""
    if isinstance(value, torch.Tensor):
        return [(where or "input", value)]
    if isinstance(value, dict):
        return [item for key in sorted(value, key=str)
                for item in input_tensors(value[key], f"{where}.{key}" if where else str(key))]
    if isinstance(value, (list, tuple)):
        return [item for i, v in enumerate(value) for item in input_tensors(v, f"{where}[{i}]")]
    return []


def same_tensor_values(a, b) -> bool:
    """Same type, dtype, shape and values (NaN equal to NaN)."""
    if type(b) is not torch.Tensor or a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.is_floating_point() or a.is_complex():
        return bool(((a == b) | (a.isnan() & b.isnan())).all())
    return torch.equal(a, b)


def changed_input(sent, after) -> str | None:
    """The message when the tensors the code received (`after`: their values once it
    returned, in `input_tensors` order) differ from the inputs `sent`; None when they are
    the same, or when the worker sent nothing to compare (large training inputs)."""
    if after is None or sent is None:  # nothing sent back, or no record of what was sent
        return None
    before = input_tensors(sent)
    if type(after) not in (list, tuple) or len(after) != len(before):
        return f"{CHANGES_INPUT}: the inputs could not be compared after the call"
    for (where, tensor), got in zip(before, after):
        if not same_tensor_values(tensor, got):
            return (f"{CHANGES_INPUT}: `{where}` is not the same after the call (work on a "
                    f"copy: `x = x / n`, not `x /= n` or `x.div_(n)`)")
    return None


def with_inputs_check(verdict: Verdict, changed: str | None) -> Verdict:
    """The verdict, failed (or its message extended) when the code changed its inputs."""
    if not changed:
        return verdict
    if not verdict.passed:
        return replace(verdict, message=f"{verdict.message}; it also {changed}")
    return replace(verdict, points=0.0, passed=False, message=f"the outputs are right, but it "
                                                              f"{changed}")


# ---------------------------------------------------------------------------------------
# Feedback across cases: a failure caused by another part the student wrote
# ---------------------------------------------------------------------------------------

def explain(suite: Suite, verdicts: list[Verdict]) -> list[Verdict]:
    """Each failing case that ran a part which fails its own case says so, naming the first
    such case in the suite's order (the likeliest cause: later parts build on it). Cases
    not started (TODO) or not run (the budget) are left as they are."""
    failed = {v.name: v.message for v in verdicts if not v.passed}
    explained = []
    for v in verdicts:
        # a cause failing with this very message (the module did not import) adds nothing
        causes = [] if v.passed or v.todo or v.message.startswith("not run") else [
            (own, d.part) for own, message in failed.items()
            if own != v.name and message != v.message
            for d in suite.dependencies if matches(v.name, d.cases) and matches(own, d.own_cases)]
        if causes:
            own, part = causes[0]
            v = replace(v, message=f"{v.message}; uses your `{part}`, which fails {own}: "
                                   f"fix that first")
        explained.append(v)
    return explained


def first_to_fix(suite: Suite, verdicts: list[Verdict]) -> str | None:
    """When several started cases fail: the first (in the suite's order) whose own parts do
    not depend on another failing case, with the part it grades where the suite says."""
    failing = [v.name for v in verdicts if not v.passed and not v.todo]
    if len(failing) < 2:
        return None
    for name in failing:
        upstream = [own for d in suite.dependencies if matches(name, d.cases)
                    for own in failing if matches(own, d.own_cases) and own != name]
        if upstream:
            continue
        used = [d for d in suite.dependencies if matches(name, d.own_cases)]
        downstream = sum(1 for other in failing if other != name
                         and any(matches(other, d.cases) for d in used))
        if used and downstream:
            return (f"fix {name} first (your `{used[0].part}`): {downstream} other failing "
                    f"case{'s' if downstream > 1 else ''} use{'' if downstream > 1 else 's'} it")
        return f"fix {name} first"
    return None
