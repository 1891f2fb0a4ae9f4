"""Grading a class as course staff do (issue 23): a gradebook that says why, who and which
mistakes, a class report that renders offline, batches that refuse a broken setup before
grading anyone, --resume, and Ctrl-C on a cluster."""
import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from grader import authoring, batch, paths
from grader.__main__ import main
from grader.batch import grade_class

from grader.roster import RosterError
from grader.sandbox import Limits, NoSandbox
from grader.suites import load_suite
from helpers import ROOT, browser, headless

A = "attention"
CASES = load_suite(A).select(None, training=False)
MAX = sum(c.points for c in CASES)
LIMITS = Limits(case_time=20.0)
SKELETON = (paths.ASSIGNMENTS / f"{A}.py").read_text()
REFERENCE = (paths.SOLUTIONS / f"{A}.py").read_text()
TODO = re.compile(r"^( *)# TODO:.*\n\1raise NotImplementedError\(.*\)\n", re.M)

# Two students' own code for the first two parts (the position table and attention), written
# independently of each other and of the reference; the rest left as the skeleton has it.
STUDENT_A = ["""        pe = torch.zeros(max_seq_len, d_model)
        for pos in range(max_seq_len):
            for i in range(0, d_model, 2):
                freq = 10000 ** (i / d_model)
                pe[pos, i] = math.sin(pos / freq)
                pe[pos, i + 1] = math.cos(pos / freq)
""", """    d_k = q.size(-1)
    weights = torch.einsum("nqd,nkd->nqk", q, k) / d_k ** 0.5
    weights = F.softmax(weights, dim=2)
    out = torch.einsum("nqk,nkd->nqd", weights, v)
    return out, weights
"""]
STUDENT_B = ["""        idx = torch.arange(0, d_model, 2).float()
        pos = torch.arange(max_seq_len).float().unsqueeze(1)
        div = torch.exp(-math.log(10000.0) * idx / d_model)
        pe = torch.zeros(max_seq_len, d_model)
        pe[:, 0::2] = torch.sin(pos * div)
        pe[:, 1::2] = torch.cos(pos * div)
""", """    scale = 1.0 / math.sqrt(k.shape[2])
    logits = q.matmul(k.transpose(1, 2)) * scale
    probs = logits.softmax(-1)
    return probs.matmul(v), probs
"""]

METADATA = """# Gradescope's export: folder name -> record (Ruby symbols as keys)
submission_101:
  :submitters:
  - :name: Ada Lovelace
    :sid: '1815'
    :email: ada@example.edu
  :score: !ruby/object:BigDecimal 18:0.11e3
  :created_at: 2026-03-01 10:00:00.000000000 -08:00
submission_107:
  :submitters:
  - :name: '=HYPERLINK("http://x")'
    :sid: '1912'
    :email: alan@example.edu
  - :name: Grace Hopper
    :sid: '1906'
    :email: grace@example.edu
"""


def filled(parts: list[str]) -> str:
    """The skeleton with its first TODOs replaced by `parts`, the others left to do."""
    bodies = iter(parts)
    return TODO.sub(lambda m: next(bodies, m.group(0)), SKELETON)


def near_copy(source: str) -> str:
    """The reference with its local names changed and its shape comments dropped."""
    renamed = (source.replace("scores", "logits").replace("att_values", "probs")
               .replace("position", "where"))
    return re.sub(r"  # \(.*?\)\n", "\n", renamed)


def export_of(tmp: Path) -> Path:
    """A Gradescope export of nine submissions: each a folder, metadata beside them."""
    export = tmp / "assignment_export"
    texts = {"submission_101": {f"{A}.py": REFERENCE},
             "submission_102": {f"{A}.py": SKELETON},
             "submission_104": {f"{A}.py": REFERENCE + "\ndef broken(:\n"},
             "submission_106": {"attn.py": REFERENCE},
             "submission_107": {f"{A}.py": near_copy(REFERENCE)},
             "submission_108": {f"{A}.py": filled(STUDENT_A)},
             "submission_109": {f"{A}.py": filled(STUDENT_B)}}
    for folder, files in texts.items():
        (export / folder).mkdir(parents=True)
        for name, text in files.items():
            (export / folder / name).write_text(text)
    authoring.write_mutant(A, "no_scale", export / "submission_103")
    ambiguous = export / "submission_105"
    ambiguous.mkdir()
    with zipfile.ZipFile(ambiguous / f"{A}.zip", "w") as zf:
        zf.writestr(f"draft/{A}.py", SKELETON)
        zf.writestr(f"final/{A}.py", REFERENCE)
    (export / "submission_metadata.yml").write_text(METADATA)
    return export


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """The export graded once with the command line, as staff run it (the glob matches
    the metadata file too, as a shell's would)."""
    tmp = tmp_path_factory.mktemp("class")
    export = export_of(tmp)
    out = tmp / "graded"
    code = main(["batch", *map(str, sorted(export.glob("submission_*"))), "--assignment", A,
                 "--no-training", "--jobs", "2", "--case-time", "20", "--out", str(out),
                 "--visibility", "causal/=after_due_date,pe/source=hidden"])
    assert code == 0
    with open(out / "gradebook.csv", newline="") as handle:
        rows = {row["submission"]: row for row in csv.DictReader(handle)}
    return out, rows


def test_gradebook_says_status_reason_and_mistakes(graded):
    out, rows = graded
    assert set(rows) == {f"submission_{n}" for n in range(101, 110)}
    expect = {  # submission: (status, total, reason pattern, mistakes)
        "submission_101": ("graded", MAX, r"^$", ""),
        "submission_102": ("graded", 0, r"^$", ""),
        "submission_103": ("graded", None, r"^$", "no_scale"),
        "submission_104": ("not graded", 0, rf"^syntax error in {A}\.py line \d+", ""),
        "submission_105": ("not graded", 0, rf"ambiguous submission: 2 different versions of "
                           rf"{A}\.py \({A}\.zip:draft/{A}\.py, {A}\.zip:final/{A}\.py\)", ""),
        "submission_106": ("not graded", 0, rf"^missing file: no {A}\.py .* holds attn\.py$", ""),
        "submission_107": ("graded", MAX, r"^$", ""),
    }
    for sid, (status, total, reason, mistakes) in expect.items():
        row = rows[sid]
        assert row["status"] == status, (sid, row)
        assert re.search(reason, row["reason"]), (sid, row["reason"])
        assert row["mistakes"] == mistakes, (sid, row["mistakes"])
        assert row["max"] == f"{MAX:g}"
        if total is not None:
            assert float(row["total"]) == total, (sid, row["total"])
    assert 0 < float(rows["submission_103"]["total"]) < MAX
    for sid, row in rows.items():  # the total is the sum of the per-case columns
        assert float(row["total"]) == sum(float(row[c.name]) for c in CASES), sid


def test_gradebook_names_the_students_from_gradescope_metadata(graded):
    out, rows = graded
    assert (rows["submission_101"]["student id"], rows["submission_101"]["name"],
            rows["submission_101"]["email"]) == ("1815", "Ada Lovelace", "ada@example.edu")
    group = rows["submission_107"]
    assert group["student id"] == "1912; 1906" and group["name"].endswith("; Grace Hopper")
    assert rows["submission_102"]["student id"] == ""  # not in the metadata
    with open(out / "lms.csv", newline="") as handle:
        lms = list(csv.reader(handle))
    assert lms[0] == ["id", "total"]
    totals = dict(lms[1:])
    assert totals["1815"] == totals["1906"] == totals["1912"] == f"{MAX:g}"  # each of a group
    assert totals["submission_102"] == "0" and totals["submission_104"] == ""  # not graded: blank


def test_results_carry_the_staffs_visibility(graded):
    out, _ = graded
    tests = {t["name"]: t["visibility"]
             for t in json.loads((out / "submission_101" / "results.json").read_text())["tests"]}
    assert tests["causal/attention"] == tests["causal/module"] == "after_due_date"
    assert tests["pe/source"] == "hidden" and tests["pe/sizes"] == "visible"


def pass_rates(rows: dict) -> dict[str, tuple[int, int]]:
    """{case: (passed, graded)} computed from the gradebook alone."""
    graded_rows = [r for r in rows.values() if r["status"] == "graded"]
    return {c.name: (sum(float(r[c.name]) == c.points for r in graded_rows), len(graded_rows))
            for c in CASES}


@pytest.mark.skipif(browser() is None, reason="needs Chromium (make install adds it)")
def test_report_renders_offline_with_the_gradebooks_pass_rates(graded, tmp_path):
    out, rows = graded
    page = out / "report.html"
    text = page.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", text)  # nothing to fetch
    dom = headless(page, "--dump-dom", tmp=tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    shown = {name: (int(passed), int(total)) for name, passed, total in re.findall(
        r'<tr data-case="([^"]+)">.*?<td class="num pass-rate"[^>]*>(\d+) / (\d+)',
        dom.stdout, re.S)}
    assert shown == pass_rates(rows)
    assert {"Scores", "Cases", "Not graded", "Code similarity", "Submissions"} <= set(
        re.findall(r"<h2>([^<]+)</h2>", dom.stdout))
    not_graded = re.search(r'<table id="not-graded">(.*?)</table>', dom.stdout, re.S).group(1)
    for sid, row in rows.items():
        assert (f"<td>{sid}</td>" in not_graded) == (row["status"] == "not graded")
    # The most common mistake of a case is listed with the submission that made it.
    mistakes = re.search(r'<tr data-case="attention/source">(.*?)</tr>', dom.stdout, re.S).group(1)
    assert "no_scale" in mistakes and "submission_103" in mistakes
    shot = tmp_path / "report.png"
    run = headless(page, f"--screenshot={shot}", "--window-size=1200,1600", tmp=tmp_path)
    assert run.returncode == 0 and shot.is_file()
    from matplotlib.image import imread
    assert imread(shot).std() > 0.05  # something was drawn, not a blank page


def test_report_flags_near_copies_and_not_independent_work(graded):
    out, _ = graded
    text = out / "report.html"
    pairs = set(re.findall(r'class="similar-pair" data-a="([^"]+)" data-b="([^"]+)"',
                           text.read_text()))
    assert ("submission_101", "submission_107") in pairs  # the reference and its renamed copy
    assert not [p for p in pairs if {"submission_108", "submission_109"} & set(p)]
    assert not [p for p in pairs if "submission_102" in p]  # the skeleton is boilerplate


def test_a_formula_in_a_students_name_stays_text_in_the_gradebook(graded):
    out, rows = graded
    name = rows["submission_107"]["name"]
    assert name == """'=HYPERLINK("http://x"); Grace Hopper"""  # a spreadsheet shows text
    assert "=HYPERLINK(" not in (out / "lms.csv").read_text()


# ---------------------------------------------------------------------------------------
# Refusing a broken setup before anyone is graded
# ---------------------------------------------------------------------------------------

@pytest.fixture
def broken_fixtures(tmp_path, monkeypatch):
    """A copy of the fixtures whose autograder expected values are truncated."""
    copy = tmp_path / "fixtures"
    shutil.copytree(paths.FIXTURES / A, copy / A)
    target = copy / A / "autograder_expected.pt"
    target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    monkeypatch.setattr(paths, "FIXTURES", copy)
    return target


def test_a_truncated_fixture_stops_the_batch_before_anyone_is_graded(
        broken_fixtures, tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(batch, "grade", lambda *a, **k: calls.append(a))
    folder = tmp_path / "one"
    folder.mkdir()
    (folder / f"{A}.py").write_text(REFERENCE)
    out = tmp_path / "out"
    code = main(["batch", str(folder), "--assignment", A, "--no-training", "--out", str(out)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert "autograder_expected.pt cannot be read" in lines[0] and f"fixtures {A}" in lines[0]
    assert calls == [] and not out.exists()


@pytest.mark.parametrize("corruption", ["truncated", "not a torch file", "wrong structure",
                                        "another assignment's", "a case missing"])
def test_corrupt_fixtures_are_one_line_everywhere(corruption, tmp_path, monkeypatch, capsys):
    import torch
    copy = tmp_path / "fixtures"
    shutil.copytree(paths.FIXTURES / A, copy / A)
    target = copy / A / "autograder_inputs.pt"
    data = torch.load(target, weights_only=True)
    if corruption == "truncated":
        target.write_bytes(target.read_bytes()[:1000])
    elif corruption == "not a torch file":
        target.write_text("hello")
    elif corruption == "wrong structure":
        torch.save([1, 2, 3], target)
    elif corruption == "another assignment's":
        torch.save({**data, "meta": {**data["meta"], "assignment": "gpt"}}, target)
    else:
        data["cases"].pop(CASES[3].name)
        torch.save(data, target)
    monkeypatch.setattr(paths, "FIXTURES", copy)
    monkeypatch.setattr(batch, "grade", lambda *a, **k: pytest.fail("graded someone"))
    for argv in (["grade", A, "--impl", "solutions", "--no-training"],
                 ["batch", str(paths.SOLUTIONS), "--assignment", A, "--no-training",
                  "--out", str(tmp_path / "out")],
                 ["submit", A, "--impl", "solutions", "--out", str(tmp_path / "s.zip")],
                 ["fixtures", "--check", A]):
        code = main(argv)
        captured = capsys.readouterr()
        lines = (captured.out + captured.err).strip().splitlines()
        assert code != 0 and len(lines) == 1, (argv, lines)
        assert "autograder_inputs.pt" in lines[0], (argv, lines)
    assert not (tmp_path / "out").exists() and not (tmp_path / "s.zip").exists()


def test_a_batch_without_its_sandbox_grades_nobody(tmp_path, monkeypatch):
    from grader import isolation
    monkeypatch.setattr(isolation, "probe", lambda: "bubblewrap (bwrap) is not installed")
    monkeypatch.setattr(isolation, "container_problem", lambda: "container mode needs root")
    monkeypatch.setattr(batch, "grade", lambda *a, **k: pytest.fail("graded someone"))
    with pytest.raises(NoSandbox, match="sandbox unavailable: bubblewrap .*No student code ran"):
        grade_class([paths.SOLUTIONS], A, tmp_path / "out", training=False)
    assert not (tmp_path / "out").exists()


def test_bad_metadata_is_one_line_before_anyone_is_graded(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(batch, "grade", lambda *a, **k: pytest.fail("graded someone"))
    folder = tmp_path / "submission_1"
    folder.mkdir()
    (folder / f"{A}.py").write_text(REFERENCE)
    (tmp_path / "submission_metadata.yml").write_text("submission_1: [unclosed\n")
    code = main(["batch", str(folder), "--assignment", A, "--out", str(tmp_path / "out")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "not readable submission metadata" in lines[0]
    with pytest.raises(RosterError, match="needs a `submission` or an `id` column"):
        roster = tmp_path / "roster.csv"
        roster.write_text("who,score\nada,1\n")
        grade_class([folder], A, tmp_path / "out", roster=roster)
    with pytest.raises(ValueError, match="no case or part 'nosuch/'"):
        grade_class([folder], A, tmp_path / "out", visibility="nosuch/=hidden")
    assert not (tmp_path / "out").exists()


def test_a_roster_names_submissions_by_file_name_or_id(tmp_path):
    from grader.roster import Student, identities
    zipped, by_id, nobody = tmp_path / "ada.zip", tmp_path / "1906", tmp_path / "x.py"
    zipped.write_bytes(b"")
    by_id.mkdir()
    nobody.write_text("")
    roster = tmp_path / "roster.csv"
    roster.write_text("Student ID,Name,Email,Submission\n1815,Ada,ada@x.edu,ada.zip\n"
                      "1906,Grace,grace@x.edu,\n")
    found = identities([zipped, by_id, nobody], roster)
    assert found == {zipped: [Student("1815", "Ada", "ada@x.edu")],
                     by_id: [Student("1906", "Grace", "grace@x.edu")]}


# ---------------------------------------------------------------------------------------
# Uploads with one meaning, and visibility rules
# ---------------------------------------------------------------------------------------

def zip_of(path: Path, files: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return path


def upload(tmp: Path, layout: str) -> Path:
    """A submitted folder: `layout` names what the student uploaded."""
    folder = tmp / layout
    folder.mkdir()
    if layout == "nested copies":
        for name, text in (("draft", SKELETON), ("final", REFERENCE)):
            (folder / name).mkdir()
            (folder / name / f"{A}.py").write_text(text)
    elif layout == "py beside a zip":
        (folder / f"{A}.py").write_text(SKELETON)
        zip_of(folder / f"{A}.zip", {f"{A}.py": REFERENCE})
    elif layout == "two zips":
        zip_of(folder / "one.zip", {f"{A}.py": SKELETON})
        zip_of(folder / "two.zip", {f"{A}.py": REFERENCE})
    elif layout == "the same module twice":
        (folder / f"{A}.py").write_text(REFERENCE)
        zip_of(folder / f"{A}.zip", {f"{A}.py": REFERENCE, "MANIFEST.json": "{}"})
    elif layout == "many wrong files":
        for n in range(14):
            (folder / f"part{n:02d}.py").write_text("")
        (folder / "bad\x1b[2Jname\n.py").write_text("")
    return folder


@pytest.mark.parametrize("layout,refusal", [
    ("nested copies", rf"^ambiguous submission: 2 different versions of {A}\.py "
                      rf"\(draft/{A}\.py, final/{A}\.py\); expected exactly one {A}\.py"),
    ("py beside a zip", rf"^ambiguous submission: .*\({A}\.py, {A}\.zip:{A}\.py\)"),
    ("two zips", rf"^ambiguous submission: .*\(one\.zip:{A}\.py, two\.zip:{A}\.py\)"),
    ("many wrong files", rf"^missing file: no {A}\.py in the submission; it holds "
                         r"bad\?\[2Jname\?\.py, part00\.py, .*part08\.py and 5 more$"),
])
def test_an_upload_with_more_than_one_meaning_is_refused(tmp_path, layout, refusal):
    from grader import intake
    with intake.workspace() as work:
        with pytest.raises(intake.SubmissionError) as refused:
            intake.locate(upload(tmp_path, layout), A, Path(work))
    message = str(refused.value)
    assert re.search(refusal, message), message
    assert message.isprintable() and len(message) < 600


def test_copies_of_one_module_are_one_meaning(tmp_path):
    from grader import intake
    with intake.workspace() as work:
        folder, _ = intake.locate(upload(tmp_path, "the same module twice"), A, Path(work))
        assert (folder / f"{A}.py").read_text() == REFERENCE


def test_visibility_rules_go_from_the_most_specific(monkeypatch):
    from grader.report import visibility_of
    monkeypatch.setattr(load_suite(A), "visibility",
                        {"*": "after_published", "causal/": "after_due_date",
                         "causal/module": "hidden"})
    shown = visibility_of(A)
    assert shown["causal/module"] == "hidden" and shown["causal/attention"] == "after_due_date"
    assert shown["pe/source"] == "after_published"
    shown = visibility_of(A, "causal/=visible,pe/sizes=hidden")  # the command line wins
    assert shown["causal/attention"] == "visible" and shown["causal/module"] == "hidden"
    assert shown["pe/sizes"] == "hidden" and shown["pe/source"] == "after_published"
    monkeypatch.setattr(load_suite(A), "visibility", {})
    assert set(visibility_of(A).values()) == {"visible"}  # the default is unchanged


# ---------------------------------------------------------------------------------------
# --resume
# ---------------------------------------------------------------------------------------

def test_resume_regrades_only_what_changed(tmp_path):
    folders = []
    for name, text in [("ref", REFERENCE), ("skeleton", SKELETON), ("partial", filled(STUDENT_A))]:
        (tmp_path / name).mkdir()
        (tmp_path / name / f"{A}.py").write_text(text)
        folders.append(tmp_path / name)
    zipped = tmp_path / "zipped.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr(f"{A}.py", REFERENCE)
    folders.append(zipped)
    out = tmp_path / "out"
    options = dict(training=False, limits=LIMITS, progress=False, class_report=False)
    first = grade_class(folders, A, out, **options)
    assert sorted(first.regraded) == ["partial", "ref", "skeleton", "zipped"]
    second = grade_class(folders, A, out, resume=True, **options)
    assert second.regraded == []
    assert {s: o.score for s, o in second.outcomes.items()} == \
        {s: o.score for s, o in first.outcomes.items()}
    book = (out / "gradebook.csv").read_text()
    (tmp_path / "skeleton" / f"{A}.py").write_text(REFERENCE)  # the student resubmitted
    third = grade_class(folders, A, out, resume=True, **options)
    assert third.regraded == ["skeleton"]
    assert third.outcomes["skeleton"].score == MAX
    assert (out / "gradebook.csv").read_text() != book
    # Another grader version (here: other options) regrades everyone.
    fourth = grade_class(folders, A, out, resume=True,
                         **dict(options, limits=Limits(case_time=19.0)))
    assert sorted(fourth.regraded) == ["partial", "ref", "skeleton", "zipped"]


# ---------------------------------------------------------------------------------------
# Ctrl-C on a cluster
# ---------------------------------------------------------------------------------------

def test_ctrl_c_on_a_local_cluster_is_one_line_and_leaves_nothing_half_written(tmp_path):
    pytest.importorskip("distributed")
    folders = []
    for n in range(6):
        (tmp_path / f"s{n}").mkdir()
        # s0 sleeps while it is imported: the batch is still grading when Ctrl-C comes,
        # however loaded the machine
        slow = "\n\nimport time\ntime.sleep(45)\n" if n == 0 else ""
        (tmp_path / f"s{n}" / f"{A}.py").write_text(REFERENCE + slow)
        folders.append(str(tmp_path / f"s{n}"))
    out = tmp_path / "out"
    run = subprocess.Popen(
        [sys.executable, "-m", "grader", "batch", *folders, "--assignment", A, "--no-training",
         "--scheduler", "local:2", "--out", str(out)], cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
        # as from a terminal: a run started in the background without job control (nohup,
        # a script's `&`) passes SIGINT down ignored, and Python then never sees Ctrl-C
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not list(out.glob("*/results.json")):
        time.sleep(0.2)  # wait until grading is under way
    assert list(out.glob("*/results.json")), "the batch never started grading"
    os.killpg(run.pid, signal.SIGINT)  # what a terminal sends to the whole group on Ctrl-C
    stdout, stderr = run.communicate(timeout=120)
    lines = [line for line in (stdout + stderr).splitlines() if line.strip()]
    assert run.returncode == 130 and lines == ["interrupted"], lines
    assert not (out / "gradebook.csv").exists()
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]  # no temporary files
    for results in out.glob("*/results.json"):
        json.loads(results.read_text())  # each one whole
