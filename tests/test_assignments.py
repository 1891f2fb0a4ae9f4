"""Every assignment: reference full marks, skeleton zero, known mistakes caught and named,
generated files in sync, training reaches its threshold (notebooks: test_notebooks.py)."""
import pytest

from grader import authoring, paths
from grader.notebooks import notebooks
from grader.suites import available, load_suite
from grader.audit import audit, table
from grader.grade import grade
from helpers import graded, graded_mutant

ASSIGNMENTS = [a for a in available() if (paths.SOLUTIONS / f"{a}.py").is_file()]
MUTANTS = [(a, m) for a in ASSIGNMENTS for m in authoring.mutants(a)]
EQUIVALENTS = [(a, e) for a in ASSIGNMENTS for e in authoring.equivalents(a)]
TRAINING = [(a, c.name) for a in ASSIGNMENTS for c in load_suite(a) if c.is_training]


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_reference_scores_full_marks(assignment):
    result = graded(assignment, "solutions")
    failed = [(v.name, v.message) for v in result.verdicts if not v.passed]
    assert not failed
    assert result.score == result.max_score > 0


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_skeleton_scores_zero_with_one_clear_line_per_case(assignment):
    result = graded(assignment, "assignments")
    assert result.score == 0
    for v in result.verdicts:
        assert v.message.startswith("not implemented yet"), (v.name, v.message)
        assert "\n" not in v.message and "Traceback" not in v.message


@pytest.mark.parametrize("assignment,mutant", MUTANTS)
def test_known_mistake_loses_points_and_is_named(assignment, mutant, tmp_path):
    description, _ = authoring.mutants(assignment)[mutant]
    result = graded_mutant(assignment, mutant, tmp_path)
    assert result.score < result.max_score
    named = [v for v in result.verdicts if description in v.message]
    assert named, f"no failing case names the mistake {mutant!r}"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_every_assignment_has_four_equivalents(assignment):
    assert len(authoring.equivalents(assignment)) >= 4


@pytest.mark.parametrize("assignment,equivalent", EQUIVALENTS)
@pytest.mark.parametrize("fixture_set", ["public", "autograder"])
def test_known_correct_alternative_scores_full_marks(assignment, equivalent, fixture_set,
                                                     tmp_path):
    authoring.write_equivalent(assignment, equivalent, tmp_path / equivalent)
    result = grade(assignment, str(tmp_path / equivalent), device="cpu", which=fixture_set,
                   training=False)
    failed = [(v.name, v.message) for v in result.verdicts if not v.passed]
    assert not failed


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_audit_is_clean_on_fresh_seeds(assignment):
    """Every equivalent passes and every mutant is caught on 3 new seeds per case."""
    result = audit(assignment, seeds=3)
    assert result.clean, table(result)


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_generated_files_are_in_sync(assignment):
    assert authoring.skeletons(check=True) == []
    assert notebooks(check=True) == []
    stale, drift = authoring.fixtures(assignment, check=True)
    assert stale == [], stale


@pytest.mark.parametrize("assignment,case", TRAINING)
def test_reference_reaches_training_threshold(assignment, case):
    result = grade(assignment, "solutions", device="cpu", cases=[case])
    (verdict,) = result.verdicts
    assert verdict.passed, verdict.message
