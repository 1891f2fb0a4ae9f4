"""Proving a suite from both sides: every correct implementation passes with a margin, every
known mistake fails with one, on many fresh seeds.

`python -m grader audit A --seeds N` runs the reference, every equivalent
(`solutions/<a>_equivalents.py`) and every mutant (`solutions/<a>_mutants.py`) in this
process (instructor code only: nothing here is a submission) on N new input seeds per case,
judges each with the grader's own `judge`, and prints per case the worst error of any correct
implementation, the smallest error of any mistake the case catches, and the tolerance.
`judged` is the verdict `grade` would give one of these modules, judged here: the tests use it
on the stored fixture sets too, so every variant is proven without a sandbox each.
Training cases are left out: they are proven by their own calibration runs.
"""
import math
import sys
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from dlkit.utils import load_assignment
from grader import paths, reach
from grader.authoring import (case_inputs, expected_outputs, load_variants, one_thread, oracles,
                              run_on_copy)
from grader.cases import Verdict
from grader.grade import verdict as graded_verdict
from grader.sandbox import clean_message, plain
from grader.suites import load_suite
from grader.worker import error_line

MIN_MARGIN = 10.0      # the audit fails when a tolerance sits closer than this to either side
AUDIT_BASE = 2_000_000  # far from the public (0) and autograder (1,000,000) seeds
SEED_STRIDE = 100_000   # Case.seed adds < 100,000 to its base


@dataclass
class CaseAudit:
    name: str
    tol: float
    seeded: bool = True                 # False: run on the first seed only (Case.seeded)
    worst_correct: float = 0.0          # largest error of any correct implementation
    worst_correct_by: str = ""
    best_mutant: float = math.inf       # smallest error of a mistake this case catches
    best_mutant_by: str = ""
    correct_failures: list[str] = field(default_factory=list)  # "equivalent@seed: message"
    caught: set = field(default_factory=set)                    # mutants failed on some seed
    slipped: dict = field(default_factory=dict)                 # mutant -> seeds it passed

    @property
    def correct_margin(self) -> float:
        """tol / worst correct error (inf when correct code is exact)."""
        return math.inf if self.worst_correct == 0 else self.tol / self.worst_correct

    @property
    def mistake_margin(self) -> float:
        """best mistake's error / tol, over the mistakes this case catches by its tolerance."""
        return math.inf if self.tol == 0 else self.best_mutant / self.tol

    @property
    def narrow(self) -> list[str]:
        """Which side's margin is under MIN_MARGIN, as flags."""
        found = []
        if self.correct_margin < MIN_MARGIN and not self.correct_failures:
            found.append(f"correct code within {self.correct_margin:.3g}x of the tolerance "
                         f"({self.worst_correct_by})")
        if self.mistake_margin < MIN_MARGIN:
            found.append(f"a mistake within {self.mistake_margin:.3g}x of the tolerance "
                         f"({self.best_mutant_by})")
        return found


@dataclass
class Audit:
    assignment: str
    seeds: int
    cases: list[CaseAudit]
    escaped: dict            # mutant -> seeds on which no case caught it
    whole_suite: bool = True  # False with --cases: escapes are not judged then

    @property
    def clean(self) -> bool:
        return not self.escaped and not any(c.correct_failures or c.narrow for c in self.cases)


def error_of(verdict) -> float:
    """The verdict's error; a failure without one (wrong shape, crash) counts as infinite,
    and so does a failure with an error within the tolerance (a property, a changed input,
    a banned call): the tolerance did not decide it, so it has no margin to measure."""
    if verdict.error is None or math.isnan(verdict.error):
        return 0.0 if verdict.passed else math.inf
    if not verdict.passed and verdict.tol is not None and verdict.error <= verdict.tol:
        return math.inf
    return verdict.error


@dataclass
class Implementations:
    """What an audit runs, imported once: {name: (description, module)} of each kind."""
    reference: object
    equivalents: dict
    mutants: dict
    shortcuts: dict  # {implementation: {case: message}} of the library-shortcut policy
    touched: dict    # {variant: what it rewrites (`reach.touched`)}

    @property
    def correct(self) -> dict:
        return {"reference": ("the reference", self.reference), **self.equivalents}

    def reused(self, name: str, reference_ran: tuple, calls: frozenset,
               every_case: bool = False) -> tuple | None:
        """The reference's run of a case (`reference_ran`, which made `calls`) where it is
        also `name`'s run: the reference itself, or (unless `every_case`) a variant whose
        rewritten functions the case never calls. None: `name` must run the case itself."""
        if name == "reference" or not (every_case or reach.reaches(self.touched[name], calls)):
            return reference_ran
        return None


def load_implementations(assignment: str, folder: Path) -> Implementations:
    """The reference, every equivalent and every mutant, their files written under `folder`,
    with what the library-shortcut policy costs each (read from its source, as `grade` does)
    and what each variant rewrites."""
    equivalents = load_variants(assignment, "equivalents", folder)
    mutants = load_variants(assignment, "mutants", folder)
    reference = load_assignment(assignment, paths.SOLUTIONS)
    sources = {name: Path(module.__file__).read_text()
               for name, (_, module) in {"reference": (None, reference), **equivalents,
                                         **mutants}.items()}
    touched = {name: reach.touched(sources["reference"], source, vars(reference))
               for name, source in sources.items() if name != "reference"}
    return Implementations(reference, equivalents, mutants,
                           library_shortcuts(load_suite(assignment), sources), touched)


def audit(assignment: str, seeds: int = 5, cases=None, progress=None,
          implementations: Implementations | None = None, every_case: bool = False,
          made=None) -> Audit:
    """Audit on `seeds` fresh seeds per case; `implementations` reuses modules already loaded.
    A variant runs only on the cases that reach what it rewrites (`grader.reach`), unless
    `every_case`. made(variant, case): its `run_here` result of an unseeded case (the same
    on every seed) when the caller has one already, else None."""
    with one_thread(), tempfile.TemporaryDirectory() as tmp:
        loaded = implementations or load_implementations(assignment, Path(tmp))
        sys.modules[assignment] = loaded.reference  # the name the suite's helpers look up
        return run_audit(assignment, seeds, cases, progress, loaded, every_case, made)


def run_audit(assignment: str, seeds: int, cases, progress, loaded: Implementations,
              every_case: bool = False, made=None) -> Audit:
    chosen = load_suite(assignment).select(cases, training=False)
    known_oracles = oracles(assignment)
    results = [CaseAudit(c.name, c.tol, c.seeded) for c in chosen]
    caught_on = {m: set() for m in loaded.mutants}
    for number in range(seeds):
        base = AUDIT_BASE + number * SEED_STRIDE
        for case, row in zip(chosen, results):
            if number and not case.seeded:  # its verdicts cannot change with the seed
                if progress:
                    progress(case.name)
                continue
            inputs = case_inputs(case, case.seed(base))
            expected = {"expected": expected_outputs(case, inputs, loaded.reference,
                                                     known_oracles)}
            reference_ran, calls = reach.called(
                loaded.reference, lambda: run_here(case, loaded.reference, inputs))

            def ran(name: str) -> tuple | None:
                """A run of `name` on this case made already; None: it runs here."""
                found = loaded.reused(name, reference_ran, calls, every_case)
                if found is None and made and not case.seeded:
                    found = made(name, case)
                return found
            for name, (_, module) in loaded.correct.items():
                verdict = judged(case, module, inputs, expected, loaded.shortcuts[name],
                                 ran(name))
                error = error_of(verdict)
                if error >= row.worst_correct:
                    row.worst_correct, row.worst_correct_by = error, name
                if not verdict.passed:
                    row.correct_failures.append(f"{name}@{number}: {verdict.message}")
            for name, (_, module) in loaded.mutants.items():
                verdict = judged(case, module, inputs, expected, loaded.shortcuts[name],
                                 ran(name))
                if verdict.passed:
                    row.slipped.setdefault(name, []).append(number)
                    continue
                caught_on[name].update([number] if case.seeded else range(seeds))
                row.caught.add(name)
                error = error_of(verdict)
                if error < row.best_mutant:
                    row.best_mutant, row.best_mutant_by = error, name
            if progress:
                progress(case.name)
    # Only the whole suite must catch every mutant: a few chosen cases need not.
    escaped = {} if cases else {m: sorted(set(range(seeds)) - got)
                                for m, got in caught_on.items() if len(got) < seeds}
    for row in results:  # a mistake this case never catches is another case's business
        row.slipped = {m: s for m, s in row.slipped.items() if m in row.caught}
    return Audit(assignment, seeds, results, escaped, whole_suite=not cases)


def library_shortcuts(suite, sources: dict) -> dict:
    """{implementation: {case: message}}: what the library-shortcut policy (read from each
    one's source, as `grade` does) costs each implementation of `sources` ({name: text})."""
    from grader.policy import violations
    return {name: violations(source.encode(), suite) for name, source in sources.items()}


def run_here(case, module, inputs) -> tuple:
    """(outputs, error, changed) of one implementation run on one case here, on the CPU:
    an exception becomes the worker's one line, as the sandbox would report it."""
    try:
        outputs, changed = run_on_copy(case, module, inputs)
        return outputs, None, changed
    except NotImplementedError as exc:
        return None, f"not implemented yet ({exc})" if str(exc) else "not implemented yet", None
    except Exception as exc:  # noqa: BLE001 - a mistake may crash; a correct one must not
        return None, error_line(exc, module.__file__), None


def judged(case, module, inputs, fixture: dict, shortcuts=None, ran=None) -> Verdict:
    """The grader's verdict on one implementation run here, on the CPU, judged as `grade`
    judges a sandboxed worker's reply: outputs made plain, an exception reported in the
    worker's one line, `fixture` holding "expected" (and "mutants", to name a mistake); a
    case whose part uses a banned library call fails (`shortcuts`: case -> message).
    `ran`: this run's `run_here` result when it is already known."""
    if shortcuts and case.name in shortcuts:
        given = Verdict(case.name, 0.0, case.points, False, shortcuts[case.name])
    else:
        outputs, error, changed = ran if ran is not None else run_here(case, module, inputs)
        given = graded_verdict(case, None if error is not None else plain(outputs),
                               None if error is None else clean_message(error), fixture,
                               changed=changed)
    return replace(given, message=clean_message(given.message))  # as `grade` shows it


def margin(numerator: float, denominator: float) -> str:
    if denominator == 0:
        return "inf"
    ratio = numerator / denominator
    return "inf" if math.isinf(ratio) else f"{ratio:.3g}x"


def fmt(value: float) -> str:
    return "-" if math.isinf(value) else f"{value:.1e}"


def table(result: Audit) -> str:
    """Per case: worst correct error, tolerance, best wrong error, and both margins."""
    head = (f"{'case':<32} {'worst correct':>13} {'tol':>7} {'best mutant':>11} "
            f"{'tol/correct':>11} {'mutant/tol':>10}  flags")
    lines = [f"== audit {result.assignment}: {result.seeds} seeds per case ==", head,
             "-" * len(head)]
    for row in result.cases:
        flags = [] if row.seeded else ["one seed (its verdicts cannot depend on the seed)"]
        if row.correct_failures:
            flags.append(f"CORRECT CODE FAILS ({row.correct_failures[0]})")
        if row.slipped:
            flags.append("sometimes missed: " + ", ".join(
                f"{m} on {len(s)} seed(s)" for m, s in sorted(row.slipped.items())))
        flags += [f"NARROW: {flag}" for flag in row.narrow]
        best = margin(row.best_mutant, row.tol) if row.caught else "-"
        lines.append(f"{row.name:<32} {fmt(row.worst_correct):>13} {row.tol:>7.0e} "
                     f"{fmt(row.best_mutant):>11} {margin(row.tol, row.worst_correct):>11} "
                     f"{best:>10}  {'; '.join(flags)}")
    lines.append("-" * len(head))
    for mutant, missed in sorted(result.escaped.items()):
        lines.append(f"MUTANT ESCAPES: {mutant} passes every case on seed(s) {missed[:10]}")
    if not result.clean:
        lines.append(f"NOT CLEAN: see the flags above (policy: each tolerance at least "
                     f"{MIN_MARGIN:g}x from both sides, 100x where possible)")
    elif result.whole_suite:
        lines.append(f"clean: no correct implementation failed, every mutant was caught on "
                     f"every seed, every tolerance at least {MIN_MARGIN:g}x from both sides")
    else:
        lines.append("clean on these cases: no correct implementation failed (mutant escapes "
                     "are judged on the whole suite only)")
    return "\n".join(lines)
