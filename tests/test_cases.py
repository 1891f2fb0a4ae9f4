"""The comparison core: validation before arithmetic, tolerances, diagnosis, profiles."""
import collections

import pytest
import torch

from dlkit import rel_error
from grader import audit as audit_module
from grader import authoring, paths
from grader.audit import table
from grader.authoring import case_inputs, load_assignment, one_thread, run_on_copy
from grader.cases import Case, Property, distance, judge, validate
from grader.grade import verdict
from grader.suites import load_suite
from helpers import ASSIGNMENTS


def case(**kw):
    return Case("part/case", 2, lambda g: {}, lambda m, x, d: None, **kw)


def test_rel_error_is_the_design_formula():
    x, y = torch.tensor([1.0, 0.0, -2.0]), torch.tensor([1.1, 0.0, -2.0])
    assert abs(rel_error(x, y) - 0.1 / 2.1) < 1e-6  # 1.1 is not exact in float32
    assert rel_error(torch.zeros(3), torch.zeros(3)) == 0.0
    assert rel_error(torch.tensor([1, 2]), torch.tensor([1, 3])) == 0.2


def test_validate_rejects_wrong_types_before_comparing():
    expected = {"out": torch.zeros(2, 3)}
    assert validate({"out": torch.zeros(2, 3)}, expected) is None
    assert "dtype torch.float64" in validate({"out": torch.zeros(2, 3, dtype=torch.float64)}, expected)
    assert "shape (3, 2)" in validate({"out": torch.zeros(3, 2)}, expected)
    assert "NaN or Inf" in validate({"out": torch.full((2, 3), float("inf"))}, expected)
    assert "keys" in validate({"other": torch.zeros(2, 3)}, expected)
    assert "expected a dict" in validate(torch.zeros(2, 3), expected)

    class Sneaky(torch.Tensor):
        pass
    assert "torch.Tensor" in validate({"out": torch.zeros(2, 3).as_subclass(Sneaky)}, expected)
    assert validate({"out": torch.full((2, 3), float("nan"))}, expected, finite=False) is None


def test_distance_is_exact_for_integers_and_nan_aware():
    assert distance(torch.tensor([1, 2]), torch.tensor([1, 2])) == 0.0
    assert distance(torch.tensor([1, 2]), torch.tensor([1, 3])) == 1.0
    nan = float("nan")
    assert distance(torch.tensor([nan, 1.0]), torch.tensor([nan, 1.0])) == 0.0
    assert distance(torch.tensor([nan, 1.0]), torch.tensor([0.0, 1.0])) == 1.0


def test_judge_passes_within_tolerance_and_fails_beyond():
    c = case(tol=1e-3)
    assert judge(c, torch.tensor([1.0005]), torch.tensor([1.0])).passed
    failed = judge(c, torch.tensor([1.01]), torch.tensor([1.0]))
    assert not failed.passed and failed.points == 0 and "error 1.00e-02 > tolerance" in failed.message


def test_judge_names_a_known_mistake_or_two_that_look_alike():
    c = case(tol=1e-6)
    mutants = {"a": {"description": "forgot the scale", "outputs": torch.tensor([2.0])},
               "b": {"description": "wrong axis", "outputs": torch.tensor([3.0])}}
    message = judge(c, torch.tensor([2.0]), torch.tensor([1.0]), mutants).message
    assert "forgot the scale" in message and "wrong axis" not in message
    mutants["c"] = {"description": "also 2", "outputs": torch.tensor([2.0])}
    message = judge(c, torch.tensor([2.0]), torch.tensor([1.0]), mutants).message
    assert "known mistake: forgot the scale; or: also 2" in message
    mutants["d"] = {"description": "2 again", "outputs": torch.tensor([2.0])}
    message = judge(c, torch.tensor([2.0]), torch.tensor([1.0]), mutants).message
    assert "known mistake" not in message  # three alike: too vague to name


def test_properties_fail_a_case_even_when_values_match():
    c = case(properties=[Property(lambda out: False, "the decoder sees the future")])
    v = judge(c, torch.tensor([1.0]), torch.tensor([1.0]))
    assert not v.passed and v.message == "the decoder sees the future"


def test_training_threshold_and_gpu_profile_labels():
    c = case(min_accuracy=0.75, gpu_reference=lambda: torch.tensor([1, 1, 1, 1]),
             gpu_min_accuracy=0.5)
    predictions = torch.tensor([0, 1, 2, 3])
    fixture = {"expected": torch.tensor([0, 1, 2, 0])}
    on_cpu = verdict(c, predictions, None, fixture, "cpu")
    assert on_cpu.passed and on_cpu.error == 0.75
    on_gpu = verdict(c, predictions, None, fixture, "cuda")  # gpu labels, gpu threshold
    assert not on_gpu.passed and on_gpu.error == 0.25 and ">= 0.5" in on_gpu.message
    rows = judge(case(min_accuracy=0.5), torch.tensor([[1, 2], [1, 3]]), torch.tensor([[1, 2], [1, 2]]))
    assert rows.error == 0.5  # a sequence counts only when all of it matches


def test_loss_target_cases_report_the_loss():
    c = case(max_loss=0.5)
    target = torch.zeros((), dtype=torch.float64)
    good = judge(c, torch.tensor(0.1, dtype=torch.float64), target)
    assert good.passed and good.measure == "loss" and "loss of the trained weights 0.100" in good.message
    assert not judge(c, torch.tensor(0.7, dtype=torch.float64), target).passed
    assert not judge(c, torch.tensor(0.1), target).passed  # float32: wrong dtype


def test_named_score_cases_need_every_score_over_its_threshold():
    c = case(min_scores={"IoU, first frame": 0.45, "IoU, overall": 0.55})
    target = {name: torch.zeros((), dtype=torch.float64) for name in c.min_scores}
    scores = lambda first, overall: {"IoU, first frame": torch.tensor(first, dtype=torch.float64),
                                     "IoU, overall": torch.tensor(overall, dtype=torch.float64)}
    good = judge(c, scores(0.6, 0.7), target)
    assert good.passed and good.measure == "score" and good.error == 0.6
    assert "IoU, first frame 0.600 (needs >= 0.45)" in good.message
    low = judge(c, scores(0.6, 0.5), target)
    assert not low.passed and low.error == 0.5 and "IoU, overall 0.500 (needs >= 0.55)" in low.message
    assert not judge(c, {"IoU, overall": torch.tensor(0.9, dtype=torch.float64)}, target).passed
    assert not judge(c, scores(float("nan"), 0.9), target).passed


def test_scaled_error_ignores_rounding_next_to_zero_but_not_wrong_values():
    from grader.cases import scaled_error
    expected = torch.tensor([1.0, -6.62e-05, 0.5])
    rounded = torch.tensor([1.0, -6.6206e-05, 0.5])   # 6e-9 off next to zero
    assert scaled_error(rounded, expected) < 1e-7
    assert scaled_error(torch.tensor([1.0, -6.62e-05, 0.6]), expected) > 0.09
    assert scaled_error(torch.zeros(3), torch.zeros(3)) == 0.0


def test_failure_names_the_wrong_output_and_the_property():
    c = case(tol=1e-5)
    expected = {"dx": torch.ones(3), "db": torch.ones(2)}
    v = judge(c, {"dx": torch.ones(3), "db": torch.tensor([1.0, 1.6])}, expected)
    assert not v.passed and v.message.startswith("db: error 6.00e-01 > tolerance 1e-05")
    exact = judge(c, {"ids": torch.tensor([1, 2, 3])}, {"ids": torch.tensor([1, 2, 4])})
    assert "ids: 1 of 3 values differ" in exact.message
    named = case(properties=[Property(lambda out: False, "weights must sum to 1", "rows sum to 1")])
    assert "property 'rows sum to 1' fails" in judge(named, torch.ones(1), torch.ones(1)).message


def test_not_implemented_parts_show_as_todo():
    c = case()
    v = verdict(c, None, "not implemented yet (attention: not implemented yet)", {})
    assert v.status == "TODO" and not v.passed
    assert verdict(c, None, "ValueError at x.py:3: bad", {}).status == "FAIL"


def test_fixture_check_tolerates_rounding_drift_and_catches_real_changes():
    from grader import authoring
    from grader.suites import load_suite
    suite = load_suite("transformer")
    name = "layer/encoder_vs_torch"
    value = torch.randn(4, 5, generator=torch.Generator().manual_seed(0))
    saved = {"meta": {"a": 1}, "cases": {name: {"expected": value, "ids": torch.arange(3)}}}

    def changed(**entry):
        return {"meta": {"a": 1}, "cases": {name: {"expected": value, "ids": torch.arange(3),
                                                   **entry}}}
    one_ulp = value.clone()
    one_ulp[1, 2] = torch.nextafter(one_ulp[1, 2], torch.tensor(float("inf")))
    problem, drift = authoring.fixture_difference(saved, changed(expected=one_ulp), suite)
    assert problem is None and drift > 0  # seen, reported, tolerated
    moved = value.clone()
    moved[1, 2] += 0.1
    problem, _ = authoring.fixture_difference(saved, changed(expected=moved), suite)
    assert problem and "floats moved" in problem
    problem, _ = authoring.fixture_difference(saved, changed(ids=torch.tensor([0, 1, 3])), suite)
    assert problem and "values differ" in problem


def test_a_known_mistake_of_the_wrong_shape_is_named():
    c = case(tol=1e-6)
    mutants = {"squeeze": {"description": "squeeze() dropped the batch of one",
                           "outputs": torch.ones(3)}}
    v = judge(c, torch.ones(3), torch.ones(1, 3), mutants)
    assert not v.passed and "shape (3,), expected (1, 3)" in v.message
    assert "squeeze() dropped the batch of one" in v.message


def test_a_failure_caused_by_another_part_says_so_unless_both_share_one_error():
    from grader.cases import Suite, Verdict, explain
    suite = Suite("demo")
    suite.builds_on(["mha/"], "attention", ["attention/"])

    def failed(name, message):
        return Verdict(name, 0.0, 1.0, False, message)
    own, uses = failed("attention/source", "error 1e-01"), failed("mha/forward", "error 3e-01")
    assert explain(suite, [own, uses])[1].message == (
        "error 3e-01; uses your `attention`, which fails attention/source: fix that first")
    assert explain(suite, [own, failed("mha/forward", "error 1e-01")])[1].message == "error 1e-01"
    broken = failed("mha/forward", "importing the module failed: SyntaxError")
    same = explain(suite, [failed("attention/source", broken.message), broken])
    assert [v.message for v in same] == [broken.message] * 2  # one cause, said once
    not_run = failed("mha/forward", "not run: earlier cases hit the time limit")
    assert explain(suite, [own, not_run])[1].message == not_run.message


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_a_case_run_on_one_seed_only_gets_inputs_of_one_shape_and_gives_seed_free_outputs(
        assignment):
    """Case.seeded=False (the audit runs it once): the reference's outputs and the inputs'
    shapes and dtypes are the same on two seeds."""
    reference = load_assignment(assignment, paths.SOLUTIONS)
    for unseeded in [c for c in load_suite(assignment) if not c.seeded]:
        first, second = (case_inputs(unseeded, seed) for seed in (11, 12))
        assert shapes(first) == shapes(second), unseeded.name
        with one_thread():
            outputs = [run_on_copy(unseeded, reference, x)[0] for x in (first, second)]
        assert distance(*outputs) == 0, unseeded.name


def shapes(value):
    if isinstance(value, torch.Tensor):
        return (tuple(value.shape), value.dtype)
    if isinstance(value, dict):
        return {k: shapes(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [shapes(v) for v in value]
    return type(value).__name__


def test_the_audit_runs_an_unseeded_case_once_and_counts_its_catches_on_every_seed(
        monkeypatch):
    runs = collections.Counter()
    counted = audit_module.judged

    def counting(case, *args, **kwargs):
        runs[case.name] += 1
        return counted(case, *args, **kwargs)
    monkeypatch.setattr(audit_module, "judged", counting)
    result = audit_module.audit("attention", seeds=2)
    variants = len(authoring.mutants("attention")) + len(authoring.equivalents("attention"))
    assert runs["device/meta"] == variants + 1  # the reference is judged by the equivalents' loop
    assert runs["attention/vs_torch"] == 2 * (variants + 1)
    # attention's mask made without device= is caught by device/meta alone
    assert "causal_mask_on_cpu" not in result.escaped and result.clean, table(result)
    row = next(r for r in result.cases if r.name == "device/meta")
    assert "one seed" in table(result).split(row.name, 1)[1].splitlines()[0]
