"""The sandbox (issues 9 and 21): fail closed, the two modes, nothing survives a worker,
limits that count everything, bounded replies and reports, private folders beside other
users, training that cannot be faked, batch robustness. The hostile corpus itself is in
test_corpus.py."""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest
import torch

from grader import batch, cgroups, isolation, paths, report, sandbox, seccomp, zygote
from grader.batch import grade_all, unique_ids
from grader.grade import grade, grade_outputs, judge_result
from grader.release import RUN_AUTOGRADER
from grader.sandbox import Limits, clean_message, run_cases, submission_budget
from grader.worker_protocol import FRAME, WireError, decode, encode
from grader.suites import load_suite
from helpers import NEVER_RETURNS

CORPUS = Path(__file__).parent / "corpus"
REFERENCE = (paths.SOLUTIONS / "transformer.py").read_text()
FEW = ["tokens/token_dict", "positions/sinusoidal"]
needs_sandbox = pytest.mark.skipif(isolation.probe() is not None,
                                   reason=f"no sandbox here: {isolation.probe()}")


def assert_valid_report(graded) -> dict:
    """results.json of `graded`, as Gradescope would read it: valid, one line per test."""
    from helpers import assert_gradescope_schema
    text = json.dumps(report.results(graded.verdicts, graded.seconds,
                                     notes=graded.host + graded.notes))
    data = json.loads(text)
    assert_gradescope_schema(data)
    assert len(text) < 1_000_000
    assert all(t["output"].isprintable() for t in data["tests"])
    return data


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
    assert any("limits only" in note for note in graded.host)


def test_auto_insecure_only_where_nothing_is_secret(tmp_path, no_sandbox, monkeypatch):
    folder = module_with(tmp_path / "sub")
    auto = Limits(insecure=None)
    graded = grade("transformer", folder, training=False, cases=FEW, limits=auto)
    assert graded.score == 0  # this checkout holds solutions/: fail closed
    monkeypatch.setattr(isolation, "nothing_to_protect", lambda: True)
    graded = grade("transformer", folder, training=False, cases=FEW, limits=auto)
    assert graded.score == graded.max_score
    (note,) = graded.host
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


def nested(depth: int, leaf=0):
    for _ in range(depth):
        leaf = [leaf]
    return leaf


@pytest.mark.parametrize("header", [
    {"tree": {"$t": 0, "dtype": "float32", "shape": [1 << 30, 1 << 30]}, "sizes": [4]},
    {"tree": {"$t": 0, "dtype": "float32", "shape": [2 ** 62, 2 ** 62, 0]}, "sizes": [4]},
    {"tree": {"$t": 0, "dtype": "float32", "shape": [2 ** 41, 0]}, "sizes": [4]},
    {"tree": nested(700), "sizes": [4]},
    '{"tree": ' + "[" * 200_000 + "]" * 200_000 + ', "sizes": [4]}',  # too deep for json
    {"tree": {"$t": 0, "dtype": "object", "shape": [1]}, "sizes": [4]},
    {"tree": {"$t": 3, "dtype": "float32", "shape": [1]}, "sizes": [4]},
    {"tree": {"$t": 0, "dtype": "float32", "shape": [-1]}, "sizes": [4]},
    {"tree": {"$x": 1}, "sizes": [4]},
    {"tree": [], "sizes": [5]},
])
def test_forged_frames_are_refused(header):
    text = header if isinstance(header, str) else json.dumps(header)
    with pytest.raises(WireError):
        decode(text.encode(), bytearray(4))


def test_a_structure_too_deep_for_the_wire_is_named_not_sent():
    with pytest.raises(WireError, match="nested more than 32 deep"):
        encode(nested(40), 1 << 20)
    assert "nested more than 28 deep" in str(sandbox.plain(nested(40)))


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


def test_deeply_nested_outputs_file_costs_only_its_case(tmp_path):
    value = torch.zeros(1)
    for _ in range(300):
        value = {"x": value}
    path = tmp_path / "autograder.pt"
    torch.save({"positions/sinusoidal": value, "tokens/token_dict": value}, path)
    graded = grade_outputs("transformer", path)  # was a RecursionError: no report at all
    assert graded.score == 0
    assert_valid_report(graded)


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
    folder = module_with(tmp_path / "sub", extra=NEVER_RETURNS)
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
    max_score = sum(c.points for c in load_suite("transformer").select(None, False))
    scores = {sid: sum(v.points for v in verdicts) for sid, verdicts in results.items()}
    assert scores["a"] == max_score and scores["a-2"] == max_score, scores
    assert scores["hostile"] < max_score
    assert scores["solutions"] < max_score  # the student's skeleton, not the reference
    assert scores["submission-gradebook.csv"] == max_score
    assert (out / "gradebook.csv").is_file() and (out / "a" / "results.json").is_file()
    assert not (out / "a-2" / "results.json").exists()
    assert not isolation.live_uids() & run_uids


@needs_sandbox
def test_a_training_verdict_does_not_change_with_another_grading_beside_it(trained):
    """Training cases are judged by work (fixed steps), not by the clock: the same verdict,
    and the same loss, while another grading keeps both cores busy."""
    import subprocess
    import sys
    case = "train/overfit_rnn"
    alone = trained("captioning", case)  # the run test_assignments.py's training test makes
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


# ---------------------------------------------------------------------------------------
# A valid report whatever the submission sends (issue 21)
# ---------------------------------------------------------------------------------------

def patch_zip(data: bytes, old: bytes, new: bytes) -> bytes:
    """Change bytes in both the local header and the central directory of a zip."""
    assert data.count(old) >= 2
    return data.replace(old, new)


def broken_zip(kind: str, path: Path) -> Path:
    reference = (paths.SOLUTIONS / "transformer.py").read_bytes()
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("transformer.py", reference)
        zf.writestr("notes-\u00e9.txt" if kind == "non_utf8" else "notes.txt", b"x" * 64)
    data = path.read_bytes()
    if kind == "non_utf8":  # the UTF-8 flag stays set; the name's bytes are not UTF-8
        data = patch_zip(data, "\u00e9".encode(), b"\xff\xfe")
    elif kind == "encrypted":  # general purpose flag bit 0 of transformer.py: encrypted
        data = data.replace(b"PK\x03\x04\x14\x00\x00\x00", b"PK\x03\x04\x14\x00\x01\x00", 1)
        data = data.replace(b"PK\x01\x02\x14\x03\x14\x00\x00\x00",
                            b"PK\x01\x02\x14\x03\x14\x00\x01\x00", 1)
    elif kind == "deflate64":  # compression method 9 (DEFLATE64), which zipfile cannot read
        data = data.replace(b"PK\x03\x04\x14\x00\x00\x00\x00\x00",
                            b"PK\x03\x04\x14\x00\x00\x00\x09\x00", 1)
        data = data.replace(b"PK\x01\x02\x14\x03\x14\x00\x00\x00\x00\x00",
                            b"PK\x01\x02\x14\x03\x14\x00\x00\x00\x09\x00", 1)
    elif kind == "truncated":
        data = data[: len(data) // 2] + data[-22:]
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("kind,why", [
    ("non_utf8", "a file name that is not valid UTF-8"), ("encrypted", "an encrypted file"),
    ("deflate64", "a compression method that cannot be read"), ("truncated", "")])
def test_an_unreadable_zip_is_a_one_line_submission_error(tmp_path, kind, why):
    archive = broken_zip(kind, tmp_path / "submission.zip")
    graded = grade("transformer", archive, training=False, cases=FEW)
    assert graded.score == 0
    for v in graded.verdicts:
        assert v.message.startswith("submission.zip: not a readable zip (") and why in v.message
    assert_valid_report(graded)


# ---------------------------------------------------------------------------------------
# Limits that count everything
# ---------------------------------------------------------------------------------------

needs_memory_cgroup = pytest.mark.skipif(
    not cgroups.controls("memory"),
    reason=f"no memory cgroup here: {cgroups.missing()}")


@pytest.fixture
def no_filter(monkeypatch):
    """The seccomp filter off, so the cgroup alone has to stop what the filter refuses."""
    monkeypatch.setattr(seccomp, "missing", lambda: "turned off by the test")


@needs_sandbox
@needs_memory_cgroup
@pytest.mark.parametrize("attack,why", [
    ("memfd_hoard", r"killed \(SIGKILL\): out of memory \(the submission's 512 MiB"),
    ("fork_memory", r"a child was killed|killed \(SIGKILL\): out of memory")])
def test_the_cgroup_counts_shared_memory_and_children(tmp_path, no_filter, attack, why):
    """1.5 GiB in a memfd, or 6 children of 200 MiB: per-process limits see neither."""
    folder = module_with(tmp_path / "sub", attack)
    graded = grade("transformer", folder, training=False, cases=["positions/sinusoidal"],
                   limits=Limits(memory=512 << 20, case_time=30.0))
    (verdict,) = graded.verdicts
    assert not verdict.passed and __import__("re").search(why, verdict.message), verdict.message


@needs_sandbox
@needs_memory_cgroup
def test_without_a_cgroup_the_children_hold_their_memory(tmp_path, no_filter, monkeypatch):
    """The control: the same fork_memory passes where no cgroup counts the children."""
    monkeypatch.setattr(cgroups, "hierarchy", lambda: None)
    folder = module_with(tmp_path / "sub", "fork_memory")
    graded = grade("transformer", folder, training=False, cases=["positions/sinusoidal"],
                   limits=Limits(memory=512 << 20, case_time=30.0))
    assert graded.verdicts[0].passed, graded.verdicts[0].message
    assert any(n.startswith("limits: no cgroup") for n in graded.host)


@needs_sandbox
def test_a_missing_limit_is_named_in_one_line_and_grading_goes_on(tmp_path, no_filter,
                                                                   monkeypatch):
    monkeypatch.setattr(cgroups, "hierarchy", lambda: None)
    graded = grade("transformer", module_with(tmp_path / "sub"), training=False, cases=FEW)
    assert graded.score == graded.max_score
    assert any(n.startswith("limits: no cgroup (") for n in graded.host), graded.host
    assert "limits: turned off by the test" in graded.host


@needs_sandbox
@pytest.mark.skipif(cgroups.hierarchy() is None, reason="no cgroups here")
def test_cgroups_are_removed_after_grading(tmp_path):
    graded = grade("transformer", module_with(tmp_path / "sub", "setsid_daemon"),
                   training=False, cases=FEW)
    assert graded.score == graded.max_score
    left = [f for _, base in cgroups.hierarchy().bases
            for f in base.glob(f"grader-{os.getpid()}-*")]
    assert left == []


# ---------------------------------------------------------------------------------------
# One budget per submission
# ---------------------------------------------------------------------------------------

ALL_HANG = "import time\n\n\ndef __getattr__(name):\n    time.sleep(3600)\n"


@needs_sandbox
def test_an_all_hang_submission_ends_within_its_budget(tmp_path):
    """Every attribute hangs, training included: two time-outs, then nothing more runs."""
    folder = tmp_path / "hangs"
    folder.mkdir()
    (folder / "transformer.py").write_text(ALL_HANG)
    limits = Limits(case_time=5.0)
    cases = load_suite("transformer").select(None, True)
    started = time.monotonic()
    graded = grade("transformer", folder, limits=limits)
    assert time.monotonic() - started < submission_budget(cases, limits)
    first, second, *rest = graded.verdicts
    assert first.message.startswith("time limit exceeded (5 s)")
    assert second.message.startswith("time limit exceeded (5 s)")
    assert rest and all(v.message == sandbox.NOT_RUN for v in rest)
    assert_valid_report(graded)


@needs_sandbox
def test_grade_gives_every_submission_the_default_budget(tmp_path, monkeypatch):
    """grade (and with it Gradescope and batch) applies `submission_budget` by itself."""
    monkeypatch.setattr(sandbox, "BUDGET_FACTOR", 0.0)  # the budget is the start-up time
    folder = module_with(tmp_path / "sub", extra=NEVER_RETURNS)
    started = time.monotonic()
    graded = grade("transformer", folder, training=False,
                   cases=["positions/sinusoidal", "positions/make_positions"],
                   limits=Limits(import_time=20.0))
    assert time.monotonic() - started < 30  # each case alone would have had 30 s
    assert all("total time budget" in v.message for v in graded.verdicts), graded.verdicts


# ---------------------------------------------------------------------------------------
# Safe beside other users
# ---------------------------------------------------------------------------------------

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="per-run uids and other users need root")
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
# Another user who can still read this machine's Python (installed under /root): only the
# capability to read files, nothing to become root or make namespaces with.
USER_WITH_PYTHON = NOBODY[:-1] + ["--inh-caps=+dac_read_search",
                                  "--ambient-caps=+dac_read_search", "--"]


def as_nobody(*command) -> subprocess.CompletedProcess:
    return subprocess.run(NOBODY + list(command), capture_output=True, text=True, timeout=600)


SLOW_CASE = ("_right = sinusoidal_positions\n\n\ndef sinusoidal_positions(n, d):\n"
             "    __import__('time').sleep(8)\n    return _right(n, d)\n")


def while_a_case_runs(folder: Path, check, limits=None):
    """Run check() while the worker sits in a slow case; returns what check() returned."""
    grading = threading.Thread(target=grade, args=("transformer", folder), kwargs=dict(
        training=False, cases=["positions/sinusoidal"], limits=limits))
    grading.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = check()
            if found:
                return found
            time.sleep(0.05)
        return None
    finally:
        grading.join()


@as_root
@needs_sandbox
def test_another_user_cannot_read_a_job_folder_or_the_lock_folder(tmp_path):
    """While a case runs, its job folder (where an evaluation worker holds the reference
    solution) is the worker uid's alone, and the uid locks are root's alone."""
    root = Path(isolation.jobs_root())

    def observe():
        jobs = [j for j in root.iterdir() if (j / "transformer.py").exists()]
        if not jobs:
            return None
        (job,) = jobs
        return {"job": job.stat(), "files": [f.stat() for f in job.iterdir()],
                "cat": as_nobody("cat", str(job / "transformer.py")).returncode,
                "list": as_nobody("ls", str(root)).returncode}

    seen = while_a_case_runs(module_with(tmp_path / "sub", extra=SLOW_CASE), observe)
    assert seen, "no job folder was seen"
    assert seen["job"].st_uid in isolation.UID_RANGE and seen["job"].st_mode & 0o777 == 0o700
    assert all(f.st_mode & 0o777 == 0o600 and f.st_uid == seen["job"].st_uid
               for f in seen["files"])
    assert root.stat().st_mode & 0o777 == 0o711
    assert seen["cat"] != 0 and seen["list"] != 0
    lock = isolation.LOCK_FOLDERS[0]
    assert lock.stat().st_uid == 0 and lock.stat().st_mode & 0o777 == 0o700
    assert as_nobody("ls", str(lock)).returncode != 0
    assert as_nobody("cat", "/etc/hostname").returncode == 0  # the user itself works


def test_job_folders_of_dead_graders_are_swept(tmp_path, monkeypatch):
    monkeypatch.setattr(isolation.tempfile, "gettempdir", lambda: str(tmp_path))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = tmp_path / f"grader-jobs-{dead}-abc123"
    alive = tmp_path / f"grader-jobs-{os.getpid()}-def456"
    for folder in (stale, alive):
        (folder / "job").mkdir(parents=True)
    isolation.sweep_job_folders()
    assert not stale.exists() and alive.exists()


@as_root
@pytest.mark.parametrize("kind", ["symlink", "loose", "not_root"])
def test_the_uid_lock_folder_must_be_a_root_only_folder(tmp_path, monkeypatch, kind):
    target = tmp_path / "elsewhere"
    target.mkdir()
    lock = tmp_path / "uids"
    if kind == "symlink":  # someone made it point where root would write
        lock.symlink_to(target)
    else:
        lock.mkdir(mode=0o700)
        if kind == "loose":
            lock.chmod(0o777)
        else:
            os.chown(lock, 65534, 65534)
    monkeypatch.setattr(isolation, "LOCK_FOLDERS", [lock])
    monkeypatch.setattr(isolation, "_lock_folder", None)
    with pytest.raises(isolation.Unavailable, match="uid lock folder"):
        isolation.RunUid()
    assert list(target.iterdir()) == []


@as_root
def test_uids_are_unique_across_graders_whatever_their_tmpdir(tmp_path):
    """Another grader with another TMPDIR (another container on the host) sees our lock."""
    held = isolation.RunUid()
    try:
        script = ("import sys; from grader import isolation; "
                  f"isolation.UID_RANGE = range({held.uid}, {held.uid + 1})\n"
                  "try:\n    isolation.RunUid()\nexcept isolation.Unavailable as e:\n"
                  "    print(e)\nelse:\n    print('got', isolation.UID_RANGE[0])")
        run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             env=dict(os.environ, TMPDIR=str(tmp_path)), cwd=paths.ROOT)
        assert run.stdout.strip() == "no free sandbox uid", run.stdout + run.stderr
    finally:
        held.release()


# ---------------------------------------------------------------------------------------
# Student text is inert
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw,clean", [
    ("\x1b[2K\x1b[1Gtotal 54 / 54\x1b[0m", "total 54 / 54"),
    ("a\x1b]0;title\x07b\x1b]8;;http://x\x1b\\c", "abc"),
    ("<script>alert(1)</script><img src=x onerror=alert(2)>",
     "‹script›alert(1)‹/script›‹img src=x onerror=alert(2)›"),
    ("<scr<script>ipt>alert(1)</scr</script>ipt>", "‹scr‹script›ipt>alert(1)‹/scr‹/script›ipt>"),
    ("tricky <script", "tricky \u2039script"),
    ("sample wrote <START> before <END>", "sample wrote ‹START› before ‹END›"),
    ("error 1.2e-01 > tolerance 1e-03 and x < 3", "error 1.2e-01 > tolerance 1e-03 and x < 3"),
    ("line one\nline two\r\x00\u202e", "line one line two"),
])
def test_clean_message_leaves_plain_text(raw, clean):
    assert clean_message(raw) == clean


def test_clean_message_is_bounded_whatever_it_gets():
    class Unprintable:
        def __str__(self):
            raise ValueError("no")
    assert clean_message(Unprintable()) == "(unprintable)"
    assert len(clean_message("x" * 10_000_000)) == 500


def test_results_json_stays_small_whatever_the_messages():
    from grader.cases import Verdict
    verdicts = [Verdict(f"case/{i}", 0.0, 1.0, False, "\x1b[31m" + "y" * 1_000_000)
                for i in range(200)]
    data = report.results(verdicts, 1.0, notes=["z" * 1_000_000] * 100)
    text = json.dumps(data)
    assert len(text) < 1_000_000 and "\\u001b" not in text


# ---------------------------------------------------------------------------------------
# Container mode (namespaces refused, grader root), and no mode at all
# ---------------------------------------------------------------------------------------

DOCKER_CAPS = ("-all,+chown,+dac_override,+fowner,+fsetid,+kill,+setgid,+setuid,+setpcap,"
               "+net_bind_service,+net_raw,+sys_chroot,+mknod,+audit_write,+setfcap")


@pytest.fixture
def open_tmp():
    """A folder other users can reach (pytest's tmp_path lies below a folder of root's)."""
    import tempfile
    folder = Path(tempfile.mkdtemp(prefix="grader-test-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def gradescope_layout(tmp_path: Path, impl: str = "solutions") -> Path:
    """AUTOGRADER_ROOT with the checkout as its source, a submission and a results folder."""
    root = tmp_path / "autograder"
    (root / "submission").mkdir(parents=True)
    (root / "results").mkdir()
    (root / "results").chmod(0o777)
    (root / "source").symlink_to(paths.ROOT)
    shutil.copy(paths.ROOT / impl / "transformer.py", root / "submission")
    (root / "run_autograder").write_text(RUN_AUTOGRADER.format(assignment="transformer"))
    for folder in (tmp_path, root):
        folder.chmod(0o755)
    return root


def fake_bwrap(tmp_path: Path) -> str:
    """A PATH whose bwrap fails the way it does where namespaces are refused."""
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "bwrap").write_text("#!/bin/sh\necho 'bwrap: Creating new namespace failed: "
                                  "Operation not permitted' >&2\nexit 1\n")
    (folder / "bwrap").chmod(0o755)
    folder.chmod(0o755)
    return f"{folder}:{os.environ['PATH']}"


def run_autograder(root: Path, prefix=(), path=None) -> subprocess.CompletedProcess:
    env = dict(os.environ, AUTOGRADER_ROOT=str(root), PYTHON=sys.executable, HOME="/tmp",
               GRADER_ARGS="--no-training", PATH=path or os.environ["PATH"])
    return subprocess.run([*prefix, "bash", str(root / "run_autograder")], env=env,
                          capture_output=True, text=True, timeout=900)


@as_root
def test_with_docker_capabilities_gradescope_grades_in_container_mode(tmp_path):
    """Capabilities dropped as Docker drops them (no CAP_SYS_ADMIN): bubblewrap cannot make
    namespaces, so every worker runs as a fresh uid; the reference keeps full marks."""
    root = gradescope_layout(tmp_path)
    run = run_autograder(root, prefix=["setpriv", f"--bounding-set={DOCKER_CAPS}", "--"])
    assert run.returncode == 0, run.stderr[-2000:]
    data = json.loads((root / "results" / "results.json").read_text())
    max_score = sum(c.points for c in load_suite("transformer").select(None, False))
    assert data["score"] == max_score, data["tests"]
    assert "sandbox: container mode (bubblewrap failed" in data["output"]


@as_root
def test_without_root_or_namespaces_run_autograder_writes_no_score(open_tmp):
    """Neither mode: the grader refuses with a staff-facing error, exits non-zero, and
    leaves no results.json (Gradescope shows an autograder failure, not a zero)."""
    root = gradescope_layout(open_tmp)
    run = run_autograder(root, prefix=USER_WITH_PYTHON, path=fake_bwrap(open_tmp))
    assert run.returncode == 3, run.stdout + run.stderr
    assert "error: sandbox unavailable: bubblewrap failed: bwrap: Creating new namespace " \
           "failed" in run.stderr and "container mode needs root" in run.stderr
    assert not (root / "results" / "results.json").exists()


@as_root
def test_the_image_build_self_test_fails_with_the_reason(open_tmp):
    ok = subprocess.run([sys.executable, "-m", "grader.selftest"], cwd=paths.ROOT,
                        capture_output=True, text=True, timeout=900)
    assert ok.returncode == 0 and "sandbox self-test passed" in ok.stdout, ok.stderr
    refused = subprocess.run(USER_WITH_PYTHON + [sys.executable, "-m", "grader.selftest"],
                             cwd=paths.ROOT, capture_output=True, text=True, timeout=900,
                             env=dict(os.environ, PATH=fake_bwrap(open_tmp), HOME="/tmp"))
    assert refused.returncode == 1
    assert refused.stderr.startswith("sandbox self-test FAILED: no sandbox can run student "
                                     "code here: bubblewrap failed")


@as_root
def test_container_mode_refuses_to_run_where_a_secret_is_readable(tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    readable = paths.ROOT / "grader"  # world-readable, and the test says it is secret
    monkeypatch.setattr(isolation, "forbidden_paths", lambda: [str(readable)])
    monkeypatch.setattr(sandbox, "protect_secrets_once", lambda: None)  # as if chmod failed
    folder = module_with(tmp_path / "sub", extra=f"open({str(marker)!r}, 'w').close()")
    graded = grade("transformer", folder, training=False, cases=FEW,
                   limits=Limits(mode="container"))
    assert graded.score == 0 and not marker.exists()
    assert all(v.message == f"sandbox unavailable: the worker can read {readable}"
               for v in graded.verdicts), graded.verdicts[0].message


# ---------------------------------------------------------------------------------------
# Warm start: one zygote, nothing of one worker reaches the next
# ---------------------------------------------------------------------------------------

LITTER = '''
import ctypes, os, time

for _folder in ("/tmp", "/dev/shm"):
    with open(os.path.join(_folder, "left-behind"), "w") as _f:
        _f.write("for the next one")
    os.chmod(os.path.join(_folder, "left-behind"), 0o666)
    os.makedirs(os.path.join(_folder, "locked", "inner"))
    os.chmod(os.path.join(_folder, "locked"), 0)
if os.fork() == 0:
    os.setsid()
    ctypes.CDLL(None).prctl(15, b"left-behind", 0, 0, 0)  # PR_SET_NAME: findable by name
    time.sleep(600)
    os._exit(0)
'''

FINDS_LITTER = '''
import os

_right = sinusoidal_positions


def sinusoidal_positions(num_positions, d_model):
    for folder in ("/tmp", "/dev/shm"):
        for name in ("left-behind", "locked"):
            if os.path.lexists(os.path.join(folder, name)):
                raise RuntimeError(f"found {folder}/{name}")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/comm") as f:
                name = f.read().strip()
        except OSError:
            continue
        if name == "left-behind":
            raise RuntimeError(f"found process {pid}")
    return _right(num_positions, d_model)
'''


@as_root
@pytest.mark.parametrize("mode", ["namespace", "container"])
def test_workers_share_a_zygote_and_nothing_else(tmp_path, monkeypatch, mode, run_uids):
    """A leaves files (one locked) and a daemon behind; B, forked from the same zygote right
    after (and drawing the same uid, now free), finds none of it, and neither does the host."""
    if mode == "namespace" and isolation.probe() is not None:
        pytest.skip(f"no namespaces here: {isolation.probe()}")
    zygote.stop_all()
    started = []
    monkeypatch.setattr(zygote.Zygote, "__init__", record(zygote.Zygote.__init__, started))
    limits = Limits(mode=mode)
    litter = grade("transformer", module_with(tmp_path / "a", extra=LITTER),
                   training=False, cases=FEW, limits=limits)
    finder = grade("transformer", module_with(tmp_path / "b", extra=FINDS_LITTER),
                   training=False, cases=FEW, limits=limits)
    assert litter.score == litter.max_score and finder.score == finder.max_score, \
        [v.message for v in finder.verdicts]
    assert len(started) == 1  # warm: both submissions' workers forked from one zygote
    assert not isolation.live_uids() & run_uids
    for folder in ("/tmp", "/dev/shm"):
        assert not any(os.path.lexists(Path(folder, name)) and
                       Path(folder, name).lstat().st_uid in run_uids
                       for name in ("left-behind", "locked"))


@as_root
@needs_sandbox
def test_a_zygote_that_cannot_be_cleaned_is_replaced(tmp_path, monkeypatch):
    zygote.stop_all()
    started = []
    monkeypatch.setattr(zygote.Zygote, "__init__", record(zygote.Zygote.__init__, started))
    monkeypatch.setattr(zygote.Zygote, "clean", lambda self, uid: False)
    for name in ("a", "b"):
        graded = grade("transformer", module_with(tmp_path / name), training=False, cases=FEW)
        assert graded.score == graded.max_score
    assert len(started) == 2


def record(init, calls: list):
    def recording(self, *args, **kwargs):
        calls.append(args)
        init(self, *args, **kwargs)
    return recording


@needs_sandbox
@pytest.mark.skipif(cgroups.hierarchy() is None or len(cgroups.hierarchy().bases) < 3,
                    reason=f"not every cgroup controller here: {cgroups.missing()}")
@pytest.mark.parametrize("cpu_share,cores", [(None, 1), (2 / 3, 2 / 3)])
def test_a_worker_and_its_children_share_one_limited_cgroup(tmp_path, cpu_share, cores):
    """Memory (children and shared memory counted), tasks and a CPU quota of `threads`
    cores (or `cpu_share`, which the tests' training runs use), written before the worker
    joins; its children are born in it."""
    limits = Limits(threads=1, memory=768 << 20, processes=48, cpu_share=cpu_share)
    folder = module_with(tmp_path / "sub", extra="import subprocess\n_sleeper = subprocess."
                         "Popen(['sleep', '30'])\n" + SLOW_CASE)

    def settings():
        """The group's limits once the worker and its `sleep` are in every folder of it."""
        folders = {f for _, base in cgroups.hierarchy().bases
                   for f in base.glob(f"grader-{os.getpid()}-*")}
        if not folders or any(len((f / "cgroup.procs").read_text().split()) < 2
                              for f in folders):
            return None
        return {f.name: f.read_text().split() for folder in folders for f in folder.iterdir()
                if f.name in ("memory.limit_in_bytes", "memory.max", "pids.max",
                              "cpu.cfs_quota_us", "cpu.max")}

    found = while_a_case_runs(folder, settings, limits)
    assert found, "the worker and its child were never both in their group"
    assert (found.get("memory.limit_in_bytes") or found["memory.max"]) == [str(768 << 20)]
    assert found["pids.max"] == ["48"]
    assert found.get("cpu.cfs_quota_us", found.get("cpu.max", [""])[:1]) == \
        [str(int(cores * PERIOD))]


PERIOD = cgroups.PERIOD_US


@pytest.mark.skipif(not cgroups.controls("cpu"), reason="no cpu cgroup here")
def test_the_cpu_quota_holds_a_busy_process_to_its_share():
    """A busy process in a group of 0.05 cores gets no more than that (an upper bound: a
    loaded machine only gives it less)."""
    group = cgroups.Cgroup(256 << 20, 16, 0.05)
    busy = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\n"
                             "while time.time() - t < 2: pass"])
    try:
        group.add(busy.pid)
        started = time.monotonic()
        before = os.times()
        busy.wait()
        after = os.times()
    finally:
        group.kill()
        group.remove()
    used = after.children_user + after.children_system - before.children_user - \
        before.children_system
    assert used / (time.monotonic() - started) < 0.2
