"""Grading a whole class: many submissions, each in its own sandbox, N at a time.

Writes OUT/<submission>/results.json (Gradescope schema) and OUT/gradebook.csv (one row
per submission, one column per case, then the total). One bad submission never affects the
others: each gets its own worker processes, uid slot and temporary folders.
"""
import csv
import io
import os
import queue
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm.auto import tqdm

from grader import report
from grader.authoring import write_atomic
from grader.cases import Verdict
from grader.grade import grade
from grader.sandbox import Limits
from grader.suites import load_suite


def submission_id(path: Path) -> str:
    """A folder-safe name: the zip's or folder's stem."""
    stem = path.stem if path.is_file() else path.name
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "submission"


def unique_ids(submissions: list[Path]) -> list[str]:
    seen, ids = {}, []
    for path in submissions:
        base = submission_id(path)
        seen[base] = seen.get(base, 0) + 1
        ids.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    return ids


def grade_all(submissions: list[Path], assignment: str, out: Path, *, jobs: int = 2,
              device: str = "cpu", training: bool = True, which: str = "auto",
              limits: Limits | None = None, progress: bool = True) -> dict[str, list[Verdict]]:
    """Grade every submission; returns {submission id: verdicts}."""
    suite = load_suite(assignment)
    cases = suite.select(None, training)
    jobs = max(1, jobs)
    cores = os.cpu_count() or 1
    limits = limits or Limits(threads=max(1, cores // jobs))
    slots = queue.Queue()
    for slot in range(jobs):
        slots.put(slot)
    ids = unique_ids(submissions)

    def one(item):
        sid, path = item
        slot = slots.get()
        try:
            graded = grade(assignment, str(path), device=device, which=which,
                           training=training, limits=limits, slot=slot)
        except Exception as exc:  # noqa: BLE001 - a grader bug must not sink the class
            verdicts = [Verdict(c.name, 0.0, c.points, False, f"grader error: {exc}")
                        for c in cases]
            graded_notes, seconds = [f"grader error: {exc}"], 0.0
        else:
            verdicts, graded_notes, seconds = graded.verdicts, graded.notes, graded.seconds
        finally:
            slots.put(slot)
        report.write_results(out / sid / "results.json",
                             report.results(verdicts, seconds, notes=graded_notes))
        return sid, verdicts

    results = {}
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        bar = tqdm(total=len(submissions), desc=f"grading {assignment}", unit="submission",
                   disable=not progress)
        for sid, verdicts in pool.map(one, zip(ids, submissions)):
            results[sid] = verdicts
            bar.update(1)
        bar.close()
    write_gradebook(out / "gradebook.csv", cases, results)
    return results


def write_gradebook(path: Path, cases, results: dict[str, list[Verdict]]) -> None:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["submission"] + [c.name for c in cases] + ["total", "max"])
    for sid, verdicts in sorted(results.items()):
        points = {v.name: v.points for v in verdicts}
        writer.writerow([sid] + [f"{points.get(c.name, 0):g}" for c in cases]
                        + [f"{sum(points.values()):g}", f"{sum(c.points for c in cases):g}"])
    write_atomic(path, text.getvalue().encode())
