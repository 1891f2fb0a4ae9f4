"""Grading a whole class: many submissions, each in its own sandbox, N at a time.

Writes OUT/<submission>/results.json (Gradescope schema) and OUT/gradebook.csv (one row
per submission, one column per case, then the total). One bad submission never affects the
others: each gets its own sandboxed workers, uids and temporary folders.
"""
import csv
import io
import os
import re
import sys
from dataclasses import replace
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm.auto import tqdm

from grader import report
from grader.authoring import write_atomic
from grader.cases import Verdict
from grader.grade import grade
from grader.sandbox import Limits, clean_message
from grader.suites import load_suite


RESERVED = ("gradebook",)  # ids starting with these could collide with the batch's own files


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


def grade_all(submissions: list[Path], assignment: str, out: Path, *, jobs: int = 2,
              device: str = "cpu", training: bool = True, which: str = "auto",
              limits: Limits | None = None, progress: bool = True,
              scheduler: str | None = None) -> dict[str, list[Verdict]]:
    """Grade every submission; returns {submission id: verdicts}.

    A submission is always graded as the path it is (never as the `solutions` keyword), has
    a total time budget, and a failure to grade or to write its results costs only that
    submission. With `scheduler` (a Dask address, or local:N) each submission is one task
    on that cluster (grader/cluster.py); without it, `jobs` submissions run here at once."""
    suite = load_suite(assignment)
    cases = suite.select(None, training)
    jobs = max(1, jobs)
    cores = os.cpu_count() or 1
    limits = replace(limits) if limits else Limits()
    if not limits.threads:
        limits.threads = max(1, cores // jobs)
    items = list(zip(unique_ids(submissions), submissions))
    options = dict(device=device, which=which, training=training, limits=limits)
    if scheduler:
        from grader.cluster import grade_on_cluster
        graded = on_cluster(grade_on_cluster(items, assignment, scheduler, options))
    else:
        graded = here(items, assignment, jobs, options)

    results, failures = {}, {}
    bar = tqdm(total=len(items), desc=f"grading {assignment}", unit="submission",
               disable=not progress)
    for sid, verdicts, notes, seconds, failure in graded:
        if failure:
            verdicts = [Verdict(c.name, 0.0, c.points, False, failure) for c in cases]
            notes, failures[sid] = [failure], failure
        results[sid] = verdicts
        try:
            report.write_results(out / sid / "results.json",
                                 report.results(verdicts, seconds, notes=notes))
        except OSError as exc:  # one failed write costs this submission, not the batch
            print(f"error: could not write results of {sid}: {exc.strerror}", file=sys.stderr)
        bar.update(1)
    bar.close()
    write_gradebook(out / "gradebook.csv", cases, results, failures)
    return results


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


def write_gradebook(path: Path, cases, results: dict[str, list[Verdict]],
                    failures: dict[str, str] | None = None) -> None:
    """One row per submission: points per case, total, max, and why it could not be graded
    (empty when it was)."""
    failures = failures or {}
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["submission"] + [c.name for c in cases] + ["total", "max", "not graded"])
    for sid, verdicts in sorted(results.items()):
        points = {v.name: v.points for v in verdicts}
        writer.writerow([sid] + [f"{points.get(c.name, 0):g}" for c in cases]
                        + [f"{sum(points.values()):g}", f"{sum(c.points for c in cases):g}",
                           failures.get(sid, "")])
    write_atomic(path, text.getvalue().encode())
