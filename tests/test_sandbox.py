"""The allowlisted sandbox (issue 9): fail closed, nothing survives, bounded replies, training
that cannot be faked, batch robustness. The hostile corpus itself is in test_corpus.py."""
import importlib.util
import json
import os
import shutil
import time
import zipfile
from pathlib import Path

import pytest
import torch

from grader import batch, isolation, paths, report, sandbox
from grader.batch import grade_all, unique_ids
from grader.grade import grade, grade_outputs, judge_result
from grader.sandbox import Limits, run_cases
from grader.worker_protocol import FRAME, WireError, decode, encode

CORPUS = Path(__file__).parent / "corpus"
REFERENCE = (paths.SOLUTIONS / "transformer.py").read_text()
FEW = ["tokens/token_dict", "positions/sinusoidal"]
needs_sandbox = pytest.mark.skipif(isolation.probe() is not None,
                                   reason=f"no sandbox here: {isolation.probe()}")


def module_with(folder: Path, *attacks: str, extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    text = REFERENCE + "".join("\n\n" + (CORPUS / f"{a}.py").read_text() for a in attacks)
    (folder / "transformer.py").write_text(text + "\n" + extra)
    return folder


NO_CONTAINER = "container mode needs root (to run each submission as a fresh uid)"


@pytest.fixture
def no_sandbox(monkeypatch):
    """Neither mode works here: no bubblewrap, and container mode refused (as for a user)."""
    monkeypatch.setattr(isolation, "bwrap_path", lambda: None)
    monkeypatch.setattr(isolation, "container_problem", lambda: NO_CONTAINER)
    isolation.probe.cache_clear()
    yield
    isolation.probe.cache_clear()


# ---------------------------------------------------------------------------------------
# Fail closed, and --insecure
# ---------------------------------------------------------------------------------------

def test_no_student_code_runs_without_the_sandbox(tmp_path, no_sandbox):
    marker = tmp_path / "ran"
    folder = module_with(tmp_path / "sub", extra=f"open({str(marker)!r}, 'w').close()")
    graded = grade("transformer", folder, training=False, cases=FEW)
    assert graded.score == 0 and not marker.exists()
    assert all(v.message == "sandbox unavailable: bubblewrap (bwrap) is not installed; "
               + NO_CONTAINER for v in graded.verdicts), graded.verdicts[0].message


def test_insecure_runs_with_limits_only_and_says_so(tmp_path, no_sandbox):
    folder = module_with(tmp_path / "sub")
    graded = grade("transformer", folder, training=False, cases=FEW,
                   limits=Limits(insecure=True))
    assert graded.score == graded.max_score
    assert any("limits only" in note for note in graded.notes)


def test_auto_insecure_only_where_nothing_is_secret(tmp_path, no_sandbox, monkeypatch):
    folder = module_with(tmp_path / "sub")
    auto = Limits(insecure=None)
    graded = grade("transformer", folder, training=False, cases=FEW, limits=auto)
    assert graded.score == 0  # this checkout holds solutions/: fail closed
    monkeypatch.setattr(isolation, "nothing_to_protect", lambda: True)
    graded = grade("transformer", folder, training=False, cases=FEW, limits=auto)
    assert graded.score == graded.max_score
    (note,) = graded.notes
    assert note.startswith("sandbox unavailable (bubblewrap (bwrap) is not installed; container")


@needs_sandbox
def test_the_worker_verifies_its_isolation(tmp_path, monkeypatch):
    """A path the worker can see but must not: it refuses to import student code."""
    monkeypatch.setattr(isolation, "forbidden_paths", lambda: [str(paths.ROOT / "grader")])
    marker = tmp_path / "ran"
    folder = module_with(tmp_path / "sub", extra=f"open({str(marker)!r}, 'w').close()")
    graded = grade("transformer", folder, training=False, cases=FEW)
    assert graded.score == 0
    assert all(v.message.startswith("sandbox unavailable: the worker can see")
               for v in graded.verdicts), graded.verdicts[0].message


# ---------------------------------------------------------------------------------------
# Nothing survives; uids
# ---------------------------------------------------------------------------------------

@needs_sandbox
def test_a_daemon_does_not_outlive_its_submission(tmp_path, run_uids):
    folder = module_with(tmp_path / "sub", "setsid_daemon")
    graded = grade("transformer", folder, training=False, cases=FEW)
    assert graded.score == graded.max_score
    assert not isolation.live_uids() & run_uids


@pytest.mark.skipif(os.geteuid() != 0, reason="per-run uids only as root")
def test_run_uids_are_distinct_and_held():
    first, second = isolation.RunUid(), isolation.RunUid()
    try:
        assert first.uid != second.uid and first.uid in isolation.UID_RANGE
    finally:
        first.release()
        second.release()


@needs_sandbox
def test_disk_filling_stays_inside_the_sandbox(tmp_path):
    folder = module_with(tmp_path / "sub", "fills_disk")
    graded = grade("transformer", folder, training=False, cases=["positions/sinusoidal"])
    assert graded.score == graded.max_score
    assert not Path("/tmp/grader-corpus-filler").exists()
    assert not Path("/dev/shm/grader-corpus-filler").exists()


# ---------------------------------------------------------------------------------------
# The wire format and outputs files
# ---------------------------------------------------------------------------------------

def frame_parts(frame: bytes):
    _, header_size, _ = FRAME.unpack(frame[:FRAME.size])
    return frame[FRAME.size:FRAME.size + header_size], bytearray(frame[FRAME.size + header_size:])


def test_frames_round_trip_plain_values():
    value = {"a": torch.arange(6).reshape(2, 3).t(), "b": (torch.zeros(0, 3), 1.5, float("nan")),
             "c": [torch.ones((), dtype=torch.bfloat16), None, "x"], 7: True}
    got = decode(*frame_parts(encode(value, 1 << 20)))
    assert torch.equal(got["a"], value["a"]) and got["a"].is_contiguous()
    assert got["b"][0].shape == (0, 3) and got["b"][1] == 1.5 and got["b"][2] != got["b"][2]
    assert got["c"][0].dtype == torch.bfloat16 and got[7] is True


@pytest.mark.parametrize("header", [
    {"tree": {"$t": 0, "dtype": "float32", "shape": [1 << 30, 1 << 30]}, "sizes": [4]},
    {"tree": {"$t": 0, "dtype": "object", "shape": [1]}, "sizes": [4]},
    {"tree": {"$t": 3, "dtype": "float32", "shape": [1]}, "sizes": [4]},
    {"tree": {"$t": 0, "dtype": "float32", "shape": [-1]}, "sizes": [4]},
    {"tree": {"$x": 1}, "sizes": [4]},
    {"tree": [], "sizes": [5]},
])
def test_forged_frames_are_refused(header):
    with pytest.raises(WireError):
        decode(json.dumps(header).encode(), bytearray(4))


def test_encoding_refuses_what_is_not_plain():
    with pytest.raises(WireError):
        encode({"x": object()}, 1 << 20)
    with pytest.raises(WireError):
        encode(torch.zeros(1 << 20), 1 << 10)


def test_compressed_outputs_file_is_refused_unread(tmp_path):
    bomb = tmp_path / "autograder.pt"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data.pkl", b"\0" * (200 << 20))  # 200 MB in a few hundred KB
    started = time.monotonic()
    graded = grade_outputs("transformer", bomb)
    assert graded.score == 0 and time.monotonic() - started < 60
    assert all("compressed or too large" in v.message for v in graded.verdicts), \
        graded.verdicts[0].message


def test_self_sharing_outputs_file_is_cheap_to_refuse(tmp_path):
    value = [torch.zeros(1)]
    for _ in range(60):
        value = [value, value]
    path = tmp_path / "autograder.pt"
    torch.save({"positions/sinusoidal": value}, path)
    started = time.monotonic()
    graded = grade_outputs("transformer", path, cases=["positions/sinusoidal"])
    assert graded.score == 0 and time.monotonic() - started < 60
    assert "more than 200000 values" in graded.verdicts[0].message


def test_outputs_file_over_the_cap_is_not_read(tmp_path):
    path = tmp_path / "autograder.pt"
    torch.save({"x": torch.zeros(1 << 20)}, path)  # 4 MB
    graded = grade_outputs("transformer", path, limits=Limits(output=1 << 20))
    assert all("larger than 1 MB" in v.message for v in graded.verdicts)


# ---------------------------------------------------------------------------------------
# Time budgets
# ---------------------------------------------------------------------------------------

@needs_sandbox
def test_a_submission_has_a_total_time_budget(tmp_path):
    folder = module_with(tmp_path / "sub", "infinite_loop")
    started = time.monotonic()
    graded = grade("transformer", folder, training=False,
                   cases=["positions/sinusoidal", "positions/make_positions"],
                   limits=Limits(submission_time=20.0))
    assert time.monotonic() - started < 45
    sinusoidal, after = graded.verdicts
    assert "total time budget" in sinusoidal.message, sinusoidal.message
    assert "total time budget" in after.message and not after.passed


# ---------------------------------------------------------------------------------------
# Training cases: weights come back, the reference evaluates them
# ---------------------------------------------------------------------------------------

TINY_SUITE = '''
import torch
from grader.cases import Case, Suite

suite = Suite("tiny")


def inputs(g):
    x = torch.randn(256, 2, generator=g)
    return {"x": x, "y": (x[:, 0] > 0).long(), "steps": 200}


def call(m, x, device):
    return m.fit(x["x"], x["y"], x["steps"]).state_dict()


def evaluate(m, weights, data, device):
    model = m.Model()
    model.load_state_dict(weights, strict=True)
    with torch.no_grad():
        return (model(data["x"]).squeeze(-1) > 0).long()


def reference(x):
    g = torch.Generator().manual_seed(99)
    held_out = torch.randn(500, 2, generator=g)
    return {"data": {"x": held_out}, "labels": (held_out[:, 0] > 0).long()}


suite.add(Case("train/sign", 1, inputs=inputs, call=call, evaluate=evaluate,
               reference=reference, min_accuracy=0.9, time_limit=60.0))
'''

HONEST = '''
import torch
from grader.sandbox import report_progress


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(2, 1)

    def forward(self, x):
        return self.lin(x)


def fit(x, y, steps):
    torch.manual_seed(0)
    model = Model()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for step in range(steps):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            model(x).squeeze(-1), y.float())
        opt.zero_grad()
        loss.backward()
        opt.step()
        report_progress(step + 1, steps, loss.item())
    return model
'''

# A model that answers from the inputs instead of its weights, trained not at all.
CHEAT = HONEST.replace("return self.lin(x)", "return x[:, :1] * 100").replace(
    "for step in range(steps):", "for step in range(0):")
SLOW = HONEST.replace("report_progress(step + 1, steps, loss.item())",
                      "report_progress(step + 1, steps, loss.item()); __import__('time').sleep(0.2)")


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    suite_file = tmp_path / "tiny_suite.py"
    suite_file.write_text(TINY_SUITE)
    monkeypatch.setitem(sandbox.EXTRA_SUITES, "tiny", str(suite_file))
    spec = importlib.util.spec_from_file_location("tiny_suite", suite_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    reference = tmp_path / "solutions"
    reference.mkdir()
    (reference / "tiny.py").write_text(HONEST)
    monkeypatch.setattr(paths, "SOLUTIONS", reference)
    return module.suite["train/sign"], tmp_path


def train_and_judge(case, folder: Path, source: str, limits=None):
    folder.mkdir(exist_ok=True)
    (folder / "tiny.py").write_text(source)
    limits = limits or Limits()
    inputs = case.inputs(torch.Generator().manual_seed(case.seed(0)))
    fixture = {"expected": case.reference(inputs)}
    ran = run_cases("tiny", folder / "tiny.py", [(case, inputs)], limits=limits)
    return judge_result("tiny", case, ran[case.name], fixture, "cpu", limits, folder / "tiny.py")


@needs_sandbox
def test_honest_training_passes_on_the_reference_evaluation(tiny):
    case, tmp = tiny
    verdict = train_and_judge(case, tmp / "honest", HONEST)
    assert verdict.passed, verdict.message
    assert "self-evaluated" not in verdict.message


@needs_sandbox
def test_a_model_that_fakes_its_answers_fails(tiny):
    case, tmp = tiny
    verdict = train_and_judge(case, tmp / "cheat", CHEAT)
    assert not verdict.passed and "held-out accuracy" in verdict.message


@needs_sandbox
def test_without_the_reference_the_student_module_evaluates_and_says_so(tiny, monkeypatch):
    case, tmp = tiny
    monkeypatch.setattr(paths, "SOLUTIONS", tmp / "nowhere")
    verdict = train_and_judge(case, tmp / "cheat", CHEAT)
    assert verdict.passed and verdict.message.endswith("(self-evaluated)")


@needs_sandbox
def test_a_timed_out_training_says_how_far_it_got(tiny):
    case, tmp = tiny
    verdict = train_and_judge(case, tmp / "slow", SLOW, Limits(case_time=15.0))
    assert not verdict.passed  # 200 steps of 0.2 s do not fit in 15 s; the first few do
    assert "time limit exceeded (15 s) at step" in verdict.message, verdict.message
    assert "/200, loss" in verdict.message


@needs_sandbox
def test_weights_that_are_not_a_state_dict_are_refused(tiny):
    case, tmp = tiny
    source = HONEST + "\n\ndef fit(x, y, steps):\n    return type('M', (), {'state_dict': lambda s: [1]})()\n"
    verdict = train_and_judge(case, tmp / "odd", source)
    assert not verdict.passed and "must return the model's state_dict" in verdict.message


# ---------------------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------------------

def test_submission_ids_are_unique_and_never_the_gradebook(tmp_path):
    paths_ = [tmp_path / "x" / "a.zip", tmp_path / "y" / "a.zip", tmp_path / "a-2.zip",
              tmp_path / "A.zip", tmp_path / "gradebook.csv.zip", tmp_path / "Gradebook"]
    ids = unique_ids(paths_)
    assert len({i.lower() for i in ids}) == len(ids)
    assert not any(i.lower().startswith("gradebook") for i in ids)


@needs_sandbox
def test_hostile_submission_between_two_correct_ones(tmp_path, monkeypatch, run_uids):
    """Correct, hostile (daemon, disk filling, pipe bomb, process snooping), correct: both
    correct ones keep full marks; a folder named `solutions` is graded as that folder;
    colliding names and a failed write cost nothing else."""
    good_a = module_with(tmp_path / "one" / "a")
    hostile = module_with(tmp_path / "hostile", "setsid_daemon", "pipe_bomb", "fills_disk")
    good_b = module_with(tmp_path / "two" / "a")
    skeleton = tmp_path / "three" / "solutions"
    skeleton.mkdir(parents=True)
    shutil.copy(paths.ASSIGNMENTS / "transformer.py", skeleton)
    named_like_the_gradebook = tmp_path / "gradebook.csv.zip"
    with zipfile.ZipFile(named_like_the_gradebook, "w") as zf:
        zf.writestr("transformer.py", REFERENCE)
    writes = report.write_results

    def flaky(path, data):
        if path.parent.name == "a-2":
            raise OSError(28, "No space left on device")
        writes(path, data)

    monkeypatch.setattr(report, "write_results", flaky)
    out = tmp_path / "out"
    results = grade_all([good_a, hostile, good_b, skeleton, named_like_the_gradebook],
                        "transformer", out, jobs=2, training=False, progress=False,
                        limits=Limits(case_time=20.0))
    max_score = sum(c.points for c in batch.load_suite("transformer").select(None, False))
    scores = {sid: sum(v.points for v in verdicts) for sid, verdicts in results.items()}
    assert scores["a"] == max_score and scores["a-2"] == max_score, scores
    assert scores["hostile"] < max_score
    assert scores["solutions"] < max_score  # the student's skeleton, not the reference
    assert scores["submission-gradebook.csv"] == max_score
    assert (out / "gradebook.csv").is_file() and (out / "a" / "results.json").is_file()
    assert not (out / "a-2" / "results.json").exists()
    assert not isolation.live_uids() & run_uids


@needs_sandbox
def test_a_training_verdict_does_not_change_with_another_grading_beside_it():
    """Training cases are judged by work (fixed steps), not by the clock: the same verdict,
    and the same loss, while another grading keeps both cores busy."""
    import subprocess
    import sys
    case = "train/overfit_rnn"
    alone = grade("captioning", "solutions", cases=[case]).verdicts[0]
    other = subprocess.Popen(
        ["bash", "-c", f"while true; do {sys.executable} -m grader grade transformer "
                       "--impl solutions --no-training >/dev/null 2>&1; done"],
        cwd=paths.ROOT, start_new_session=True)
    try:
        time.sleep(3)  # let it get going
        beside = grade("captioning", "solutions", cases=[case]).verdicts[0]
    finally:
        os.killpg(other.pid, 9)
        other.wait()
    assert alone.passed and beside.passed, (alone.message, beside.message)
    assert beside.measure == "loss" and abs(beside.error - alone.error) < 1e-6
