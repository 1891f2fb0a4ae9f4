"""Every assignment: reference full marks, skeleton zero, known mistakes caught and named,
known-correct alternatives full marks, generated files in sync, training reaches its
threshold (the notebooks: test_notebooks.py).

The reference and the skeleton are graded through the sandbox on both fixture sets. Every
mutant and equivalent is judged in this process against the stored fixtures (`Proof`, once
per assignment and session); one of each per assignment also goes through the sandbox and
must get identical verdicts there (with --full: every one, on both sets).
"""
import pytest

from grader import authoring
from grader.audit import table
from grader.notebooks import notebooks
from grader.sandbox import clean_message
from grader.suites import load_suite
from helpers import ASSIGNMENTS, FIXTURE_SETS, assert_same_verdicts, graded, graded_variant

MUTANTS = [(a, m) for a in ASSIGNMENTS for m in authoring.mutants(a)]
EQUIVALENTS = [(a, e) for a in ASSIGNMENTS for e in authoring.equivalents(a)]
TRAINING = [(a, c.name) for a in ASSIGNMENTS for c in load_suite(a) if c.is_training]


def through_the_sandbox() -> list:
    """(assignment, kind, name, set) graded through the sandbox and compared with the
    in-process verdicts: per assignment its first mutant (autograder set) and its first
    equivalent (public set); with --full every mutant and equivalent on both sets."""
    chosen = []
    for assignment in ASSIGNMENTS:
        for kind, which in (("mutants", "autograder"), ("equivalents", "public")):
            names = list(authoring.variants(assignment, kind))
            for name in names:
                for fixture_set in FIXTURE_SETS:
                    representative = name == names[0] and fixture_set == which
                    chosen.append(pytest.param(assignment, kind, name, fixture_set, marks=()
                                               if representative else pytest.mark.full))
    return chosen


@pytest.mark.parametrize("fixture_set", FIXTURE_SETS)
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_reference_scores_full_marks(assignment, fixture_set):
    result = graded(assignment, "solutions", fixture_set)
    failed = [(v.name, v.message) for v in result.verdicts if not v.passed]
    assert not failed
    assert result.score == result.max_score > 0


@pytest.mark.parametrize("fixture_set", FIXTURE_SETS)
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_skeleton_scores_zero_with_one_clear_line_per_case(assignment, fixture_set):
    result = graded(assignment, "assignments", fixture_set)
    assert result.score == 0
    for v in result.verdicts:
        assert v.message.startswith("not implemented yet"), (v.name, v.message)
        assert "\n" not in v.message and "Traceback" not in v.message


@pytest.mark.parametrize("fixture_set", FIXTURE_SETS)
@pytest.mark.parametrize("assignment,mutant", MUTANTS)
def test_known_mistake_loses_points_and_is_named(assignment, mutant, fixture_set, proof):
    description, _ = authoring.mutants(assignment)[mutant]
    shown = clean_message(description)  # as a student reads it (`<END>` as `‹END›`)
    verdicts = proof(assignment).verdicts("mutants", mutant, fixture_set)
    assert sum(v.points for v in verdicts) < sum(v.max_points for v in verdicts)
    named = [v for v in verdicts if not v.passed and shown in v.message]
    assert named, f"no failing case names the mistake {mutant!r}"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_every_assignment_has_four_equivalents(assignment):
    assert len(authoring.equivalents(assignment)) >= 4


@pytest.mark.parametrize("fixture_set", FIXTURE_SETS)
@pytest.mark.parametrize("assignment,equivalent", EQUIVALENTS)
def test_known_correct_alternative_scores_full_marks(assignment, equivalent, fixture_set,
                                                     proof):
    verdicts = proof(assignment).verdicts("equivalents", equivalent, fixture_set)
    failed = [(v.name, v.message) for v in verdicts if not v.passed]
    assert not failed


@pytest.mark.parametrize("assignment,kind,name,fixture_set", through_the_sandbox())
def test_sandbox_and_in_process_verdicts_agree(assignment, kind, name, fixture_set, proof,
                                               tmp_path):
    sandboxed = graded_variant(assignment, kind, name, fixture_set, tmp_path).verdicts
    assert_same_verdicts(sandboxed, proof(assignment).verdicts(kind, name, fixture_set))


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_audit_is_clean_on_fresh_seeds(assignment, proof, audit_seeds):
    """Every equivalent passes and every mutant is caught on a new seed per case (1, or 20
    with --full)."""
    result = proof(assignment).audit(audit_seeds)
    assert result.clean, table(result)


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_generated_files_are_in_sync(assignment, proof):
    assert authoring.skeletons(check=True) == []
    assert notebooks(check=True) == []
    assert proof(assignment).fixtures_in_sync() == []


@pytest.mark.parametrize("assignment,case", TRAINING)
def test_reference_reaches_training_threshold(assignment, case, trained):
    verdict = trained(assignment, case)
    assert verdict.passed, verdict.message
