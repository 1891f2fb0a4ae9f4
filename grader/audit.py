"""Proving a suite from both sides: every correct implementation passes with a margin, every
known mistake fails with one, on many fresh seeds.

`python -m grader audit A --seeds N` runs the reference, every equivalent
(`solutions/<a>_equivalents.py`) and every mutant (`solutions/<a>_mutants.py`) in this
process (instructor code only: nothing here is a submission) on N new input seeds per case,
judges each with the grader's own `judge`, and prints per case the worst error of any correct
implementation, the smallest error of any mistake the case catches, and the tolerance.
Training cases are left out: they are proven by their own calibration runs.
"""
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from dlkit.utils import load_assignment
from grader import paths
from grader.authoring import (case_inputs, expected_outputs, load_variants, one_thread, oracles,
                              run_case)
from grader.cases import judge
from grader.suites import load_suite

AUDIT_BASE = 2_000_000  # far from the public (0) and autograder (1,000,000) seeds
SEED_STRIDE = 100_000   # Case.seed adds < 100,000 to its base


@dataclass
class CaseAudit:
    name: str
    tol: float
    worst_correct: float = 0.0          # largest error of any correct implementation
    worst_correct_by: str = ""
    best_mutant: float = math.inf       # smallest error of a mistake this case catches
    best_mutant_by: str = ""
    correct_failures: list[str] = field(default_factory=list)  # "equivalent@seed: message"
    caught: set = field(default_factory=set)                    # mutants failed on some seed
    slipped: dict = field(default_factory=dict)                 # mutant -> seeds it passed


@dataclass
class Audit:
    assignment: str
    seeds: int
    cases: list[CaseAudit]
    escaped: dict            # mutant -> seeds on which no case caught it
    whole_suite: bool = True  # False with --cases: escapes are not judged then

    @property
    def clean(self) -> bool:
        return not self.escaped and not any(c.correct_failures for c in self.cases)


def error_of(verdict) -> float:
    """The verdict's error; a failure without one (wrong shape, crash) counts as infinite."""
    if verdict.error is None or math.isnan(verdict.error):
        return 0.0 if verdict.passed else math.inf
    return verdict.error


def audit(assignment: str, seeds: int = 5, cases=None, progress=None) -> Audit:
    with one_thread():
        return run_audit(assignment, seeds, cases, progress)


def run_audit(assignment: str, seeds: int, cases, progress) -> Audit:
    suite = load_suite(assignment)
    chosen = suite.select(cases, training=False)
    with tempfile.TemporaryDirectory() as tmp:
        equivalents = load_variants(assignment, "equivalents", Path(tmp))
        mutants = load_variants(assignment, "mutants", Path(tmp))
        reference = load_assignment(assignment, paths.SOLUTIONS)  # last: it stays imported
        known_oracles = oracles(assignment)
        shortcuts = library_shortcuts(assignment, suite, [*equivalents], [*mutants])
        correct = {"reference": ("the reference", reference), **equivalents}
        results = [CaseAudit(c.name, c.tol) for c in chosen]
        caught_on = {m: set() for m in mutants}
        for number in range(seeds):
            base = AUDIT_BASE + number * SEED_STRIDE
            for case, row in zip(chosen, results):
                inputs = case_inputs(case, case.seed(base))
                expected = expected_outputs(case, inputs, reference, known_oracles)
                for name, (_, module) in correct.items():
                    verdict = judged(case, module, inputs, expected, shortcuts[name])
                    error = error_of(verdict)
                    if error >= row.worst_correct:
                        row.worst_correct, row.worst_correct_by = error, name
                    if not verdict.passed:
                        row.correct_failures.append(f"{name}@{number}: {verdict.message}")
                for name, (_, module) in mutants.items():
                    verdict = judged(case, module, inputs, expected, shortcuts[name])
                    if verdict.passed:
                        row.slipped.setdefault(name, []).append(number)
                        continue
                    caught_on[name].add(number)
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


def library_shortcuts(assignment: str, suite, equivalents, mutants) -> dict:
    """{implementation: {case: message}}: what the library-shortcut policy (read from each
    one's source, as `grade` does) costs the reference, every equivalent and every mutant."""
    from grader.authoring import variant_source
    from grader.policy import violations
    found = {"reference": violations((paths.SOLUTIONS / f"{assignment}.py").read_bytes(), suite)}
    for kind, names in (("equivalents", equivalents), ("mutants", mutants)):
        for name in names:
            found[name] = violations(variant_source(assignment, name, kind).encode(), suite)
    return found


def judged(case, module, inputs, expected, shortcuts=None):
    """The grader's verdict on one implementation, run here; a crash is a failed verdict,
    and so is a case whose part uses a banned library call (`shortcuts`: case -> message)."""
    from grader.cases import Verdict
    if shortcuts and case.name in shortcuts:
        return Verdict(case.name, 0.0, case.points, False, shortcuts[case.name])
    try:
        outputs = run_case(case, module, inputs)
    except Exception as exc:  # noqa: BLE001 - a mistake may crash; a correct one must not
        return Verdict(case.name, 0.0, case.points, False,
                       f"raised {type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}")
    return judge(case, outputs, expected)


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
        flags = []
        if row.correct_failures:
            flags.append(f"CORRECT CODE FAILS ({row.correct_failures[0]})")
        if row.slipped:
            flags.append("sometimes missed: " + ", ".join(
                f"{m} on {len(s)} seed(s)" for m, s in sorted(row.slipped.items())))
        best = margin(row.best_mutant, row.tol) if row.caught else "-"
        lines.append(f"{row.name:<32} {fmt(row.worst_correct):>13} {row.tol:>7.0e} "
                     f"{fmt(row.best_mutant):>11} {margin(row.tol, row.worst_correct):>11} "
                     f"{best:>10}  {'; '.join(flags)}")
    lines.append("-" * len(head))
    for mutant, missed in sorted(result.escaped.items()):
        lines.append(f"MUTANT ESCAPES: {mutant} passes every case on seed(s) {missed[:10]}")
    if not result.clean:
        lines.append("NOT CLEAN: see the flags above")
    elif result.whole_suite:
        lines.append("clean: no correct implementation failed, every mutant was caught on "
                     "every seed")
    else:
        lines.append("clean on these cases: no correct implementation failed (mutant escapes "
                     "are judged on the whole suite only)")
    return "\n".join(lines)
