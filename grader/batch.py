"""Grading a whole class: many submissions, each in its own sandbox, N at a time.

Before anyone is graded, the assignment's suite and fixtures are loaded and checked, the
visibility rules, the roster and the metadata read, and (grading here) the sandbox probed:
any problem is one line and nothing is written. Then, under OUT:

    <submission>/results.json   Gradescope's schema
    <submission>/grading.json   the submission's SHA-256, the grader version and the
                                verdicts: what `--resume` and the class report read
    gradebook.csv               one row per submission (GRADEBOOK_COLUMNS, then a column
                                per case)
    lms.csv                     id,total: one row per student, for an LMS import
    report.html                 the class report (grader/classreport.py)

One bad submission never affects the others: each gets its own sandboxed workers, uids and
temporary folders, and a failure to grade or to write it costs only that submission.
"""
import csv
import hashlib
import io
import json
import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from tqdm.auto import tqdm

from grader import paths, report
from grader.authoring import write_atomic
from grader.cases import Verdict
from grader.grade import checked_setup, grade
from grader.roster import METADATA, Student, identities
from grader.sandbox import Limits, clean_message, require_sandbox, sandbox_mode


RESERVED = ("gradebook", "lms", "report")  # ids that could collide with the batch's own files
GRADEBOOK_COLUMNS = ["submission", "student id", "name", "email", "status", "total", "max",
                     "reason", "mistakes"]
GRADED, NOT_GRADED = "graded", "not graded"


def submission_id(path: Path) -> str:
    """A folder-safe name: the zip's or folder's stem."""
    stem = path.stem if path.is_file() else path.name
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._-")[:80] or "submission"


def unique_ids(submissions: list[Path]) -> list[str]:
    """One id per submission, unique by construction (case-insensitively, for file systems
    that fold case), never one of the batch's own file names: a taken id gets -2, -3, ..."""
    taken, ids = set(), []
    for path in submissions:
        base = submission_id(path)
        if base.lower().startswith(RESERVED):
            base = f"submission-{base}"
        candidate, n = base, 2
        while candidate.lower() in taken:
            candidate, n = f"{base}-{n}", n + 1
        taken.add(candidate.lower())
        ids.append(candidate)
    return ids


@dataclass
class Outcome:
    """One submission's grading, as the gradebook and the class report show it."""
    sid: str
    source: Path
    verdicts: list[Verdict]
    seconds: float
    notes: list[str] = field(default_factory=list)
    failure: str | None = None      # the grader itself failed on this submission
    students: list[Student] = field(default_factory=list)

    @property
    def blocked(self) -> str | None:
        """Why none of its cases could run, or None: a grader failure, or one failure that
        every case shares without any being measured or started (the file is missing or
        ambiguous, the zip unreadable, the module does not import, the sandbox failed)."""
        if self.failure:
            return self.failure
        messages = {v.message for v in self.verdicts}
        ran = any(v.passed or v.todo or v.error is not None for v in self.verdicts)
        return messages.pop() if len(messages) == 1 and not ran else None

    @property
    def status(self) -> str:
        return NOT_GRADED if self.blocked else GRADED

    @property
    def reason(self) -> str:
        """One line: why it was not graded, or the notes of its grading (refused zip
        entries, limits-only mode); empty when there is nothing to say."""
        return self.blocked or "; ".join(self.notes)

    @property
    def mistakes(self) -> list[str]:
        """The known mistakes its outputs matched, each once, in case order."""
        return list(dict.fromkeys(v.mistake for v in self.verdicts if v.mistake))

    @property
    def score(self) -> float:
        return sum(v.points for v in self.verdicts)


@dataclass
class ClassResult:
    outcomes: dict[str, Outcome]
    regraded: list[str]     # ids graded by this run (the others were kept by --resume)
    written: list[Path]


def grade_all(submissions: list[Path], assignment: str, out: Path,
              **options) -> dict[str, list[Verdict]]:
    """{submission id: verdicts} of `grade_class` (same arguments)."""
    result = grade_class(submissions, assignment, out, **options)
    return {sid: outcome.verdicts for sid, outcome in result.outcomes.items()}


def grade_class(submissions: list[Path], assignment: str, out: Path, *, jobs: int = 2,
                device: str = "cpu", training: bool = True, which: str = "auto",
                limits: Limits | None = None, progress: bool = True,
                scheduler: str | None = None, resume: bool = False,
                roster: Path | None = None, metadata: Path | None = None,
                visibility: str | None = None, class_report: bool = True,
                cases: list[str] | None = None) -> ClassResult:
    """Grade every submission and write the results, the gradebook, the LMS export and the
    class report.

    A submission is always graded as the path it is (never as the `solutions` keyword), has
    a total time budget, and a failure to grade or to write its results costs only that
    submission. With `scheduler` (a Dask address, or local:N) each submission is one task
    on that cluster (grader/cluster.py); without it, `jobs` submissions run here at once.
    With `resume`, a submission whose grading.json records the same bytes and grader version
    is kept as it is. `roster` (CSV) and `metadata` (Gradescope's submission_metadata.yml,
    found beside the submissions by default) name the students; `visibility` overrides the
    suite's Gradescope visibility rules (grader/report.py). `cases` (case names) grades
    only those. A `submission_metadata.yml` among `submissions` is read as metadata, not
    graded."""
    setup = checked_setup(assignment, which, cases, training)  # one line before anyone
    shown = report.visibility_of(assignment, visibility)
    # `batch export/submission_*` also matches Gradescope's metadata, which is no submission.
    submissions = [Path(p) for p in submissions if Path(p).name != METADATA]
    students = identities(submissions, roster, metadata)
    jobs = max(1, jobs)
    limits = replace(limits) if limits else Limits()
    if not scheduler:  # a cluster's workers check their own sandbox
        require_sandbox(limits)
    host = [] if scheduler else sandbox_mode(limits).notes  # said in every results.json
    if not limits.threads:
        limits.threads = max(1, (os.cpu_count() or 1) // jobs)
    options = dict(device=device, which=setup.which, training=training, limits=limits)
    if cases:
        options["cases"] = [case.name for case in setup.cases]
    version = grader_version(assignment, options)
    items = list(zip(unique_ids(submissions), submissions))
    digests = {sid: submission_digest(path) for sid, path in items}
    outcomes = {}
    for sid, path in items:
        kept = kept_outcome(out / sid, sid, path, digests[sid], version) if resume else None
        if kept:
            outcomes[sid] = kept
    todo = [(sid, path) for sid, path in items if sid not in outcomes]
    if scheduler and todo:
        from grader.cluster import grade_on_cluster
        graded = on_cluster(grade_on_cluster(todo, assignment, scheduler, options))
    else:
        graded = here(todo, assignment, jobs, options)

    sources = dict(items)
    bar = tqdm(total=len(todo), desc=f"grading {assignment}", unit="submission",
               disable=not progress)
    for sid, verdicts, notes, seconds, failure in graded:
        if failure:
            verdicts = [Verdict(c.name, 0.0, c.points, False, failure) for c in setup.cases]
            notes = [failure]
        outcomes[sid] = Outcome(sid, sources[sid], verdicts, seconds, notes, failure)
        write_outcome(out / sid, outcomes[sid], digests[sid], version, shown, host)
        bar.update(1)
    bar.close()
    for sid, outcome in outcomes.items():
        outcome.students = students.get(sources[sid], [])
    ordered = dict(sorted(outcomes.items()))
    written = [write_gradebook(out / "gradebook.csv", setup.cases, ordered),
               write_lms(out / "lms.csv", ordered)]
    if class_report:
        from grader.classreport import write_report
        written.append(write_report(out / "report.html", assignment, setup.cases, ordered))
    return ClassResult(ordered, [sid for sid, _ in todo], written)


def here(items, assignment: str, jobs: int, options: dict):
    """Grade on this machine, `jobs` at a time: (sid, verdicts, notes, seconds, failure)."""
    def one(item):
        sid, path = item
        try:
            graded = grade(assignment, Path(path).resolve(), **options)
        except Exception as exc:  # noqa: BLE001 - a grader bug must not sink the class
            return sid, [], [], 0.0, clean_message(f"grader error: {type(exc).__name__}: {exc}")
        return sid, graded.verdicts, graded.notes, graded.seconds, None

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        yield from pool.map(one, items)


def on_cluster(stream):
    """The cluster's results in the same form as `here`'s."""
    from grader.cluster import verdicts_of
    for sid, data, failure in stream:
        if failure:
            yield sid, [], [], 0.0, clean_message(failure)
        else:
            yield sid, verdicts_of(data), data["notes"], data["seconds"], None


# ---------------------------------------------------------------------------------------
# Resuming: a submission's bytes and the grader's version, stored beside its results
# ---------------------------------------------------------------------------------------

VERSIONED = ["grader", "dlkit"]  # code whose change can change a verdict


def grader_version(assignment: str, options: dict) -> str:
    """SHA-256 of what decides a verdict: the grader's and dlkit's code, the assignment's
    fixtures and reference, and the grading options."""
    digest = hashlib.sha256()
    files = [p for folder in VERSIONED for p in sorted((paths.ROOT / folder).rglob("*.py"))]
    files += sorted((paths.FIXTURES / assignment).glob("*.pt"))
    files += [paths.SOLUTIONS / f"{assignment}.py"]
    for path in files:
        if path.is_file():
            digest.update(path.relative_to(paths.ROOT).as_posix().encode() + b"\0")
            digest.update(path.read_bytes())
    limits = options["limits"]
    digest.update(json.dumps({"device": options["device"], "which": options["which"],
                              "training": options["training"],
                              "case_time": limits.case_time,
                              "submission_time": limits.submission_time,
                              "insecure": limits.insecure, "cases": options.get("cases")},
                             sort_keys=True).encode())
    return digest.hexdigest()


def submission_digest(path: Path) -> str:
    """SHA-256 of a submission's bytes: a file's, or a folder's files (names and bytes;
    links by their target, never followed)."""
    digest = hashlib.sha256()
    path = Path(path)
    if path.is_file():
        digest.update(path.read_bytes())
        return digest.hexdigest()
    for place, folders, names in os.walk(path):
        folders.sort()
        for name in sorted(names):
            file = Path(place) / name
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
            digest.update(os.readlink(file).encode() if file.is_symlink() else file.read_bytes())
            digest.update(b"\0")
    return digest.hexdigest()


def write_outcome(folder: Path, outcome: Outcome, digest: str, version: str,
                  visibility: dict[str, str], host: list[str] = ()) -> None:
    """results.json, then grading.json (so a crash between them means "grade it again").
    `host`: how the grader ran (sandbox mode, missing limits), the same for the batch."""
    data = report.results(outcome.verdicts, outcome.seconds,
                          notes=[*host, *outcome.notes], visibility=visibility)
    record = {"submission_sha256": digest, "grader_version": version,
              "seconds": outcome.seconds, "notes": outcome.notes, "failure": outcome.failure,
              "verdicts": [asdict(v) for v in outcome.verdicts]}
    try:
        report.write_results(folder / "results.json", data)
        write_atomic(folder / "grading.json", (json.dumps(record, indent=1) + "\n").encode())
    except OSError as exc:  # one failed write costs this submission, not the batch
        print(f"error: could not write results of {outcome.sid}: {exc.strerror}", file=sys.stderr)


def kept_outcome(folder: Path, sid: str, source: Path, digest: str,
                 version: str) -> Outcome | None:
    """The earlier outcome stored in `folder` if it is for these bytes and this grader
    version, has its results.json and was not a grader failure; else None."""
    try:
        record = json.loads((folder / "grading.json").read_text())
        if (record["submission_sha256"] != digest or record["grader_version"] != version
                or record["failure"] or not (folder / "results.json").is_file()):
            return None
        return Outcome(sid, source, [Verdict(**v) for v in record["verdicts"]],
                       float(record["seconds"]), list(record["notes"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


# ---------------------------------------------------------------------------------------
# The gradebook and the LMS export
# ---------------------------------------------------------------------------------------

def cell(value: str) -> str:
    """Text for a CSV cell that a spreadsheet shows as text, never runs as a formula."""
    value = str(value)
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def joined(students: list[Student], field_name: str) -> str:
    return "; ".join(getattr(s, field_name) for s in students if getattr(s, field_name))


def write_gradebook(path: Path, cases, outcomes: dict[str, Outcome]) -> Path:
    """One row per submission: who, status, total, max, reason, mistakes, points per case."""
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(GRADEBOOK_COLUMNS + [c.name for c in cases])
    full = sum(c.points for c in cases)
    for sid, outcome in outcomes.items():
        points = {v.name: v.points for v in outcome.verdicts}
        people = outcome.students
        writer.writerow([sid, cell(joined(people, "sid")), cell(joined(people, "name")),
                         cell(joined(people, "email")), outcome.status, f"{outcome.score:g}",
                         f"{full:g}", cell(outcome.reason), "; ".join(outcome.mistakes)]
                        + [f"{points.get(c.name, 0):g}" for c in cases])
    write_atomic(path, text.getvalue().encode())
    return path


def write_lms(path: Path, outcomes: dict[str, Outcome]) -> Path:
    """id,total: a row per student (each member of a group), identified by student id, else
    email, else the submission id; the total is empty for a submission not graded."""
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["id", "total"])
    for sid, outcome in outcomes.items():
        total = f"{outcome.score:g}" if outcome.status == GRADED else ""
        for person in outcome.students or [Student()]:
            writer.writerow([cell(person.sid or person.email or sid), total])
    write_atomic(path, text.getvalue().encode())
    return path
