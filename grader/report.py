"""Exporting: the terminal table, Gradescope's results.json and the submission zip."""
import hashlib
import io
import json
import shutil
import sys
import zipfile
from pathlib import Path

from grader.authoring import write_atomic
from grader.cases import Verdict
from grader.sandbox import clean_message

WIDTH = {"case": 28, "points": 11, "status": 6, "error": 20}


def fmt_error(v: Verdict) -> str:
    if v.error is None:
        return "-"
    if v.measure == "accuracy":
        return f"acc {v.error:.3f}"
    if v.measure == "loss":
        return f"loss {v.error:.3f}"
    if v.measure == "score":
        return f"score {v.error:.3f}"
    return f"{v.error:.1e} / {v.tol:.0e}"


def table(assignment: str, verdicts: list[Verdict], seconds: float, note: str = "") -> str:
    """A plain-text score table, one line per case."""
    tty = sys.stdout.isatty()  # cut long messages on a terminal only; logs keep them whole
    columns = shutil.get_terminal_size((120, 20)).columns
    head = (f"{'case':<{WIDTH['case']}} {'points':>{WIDTH['points']}}  {'status':<{WIDTH['status']}} "
            f"{'error / tol':<{WIDTH['error']}} message")
    lines = [f"== {assignment} ==" + (f"  ({note})" if note else ""), head, "-" * min(len(head) + 30, columns)]
    for v in verdicts:
        status = v.status
        row = (f"{v.name:<{WIDTH['case']}} {v.points:>5g} / {v.max_points:<3g}  "
               f"{status:<{WIDTH['status']}} {fmt_error(v):<{WIDTH['error']}} "
               f"{clean_message(v.message)}")
        lines.append(row if len(row) <= columns or not tty else row[: columns - 1] + "…")
    score, total = sum(v.points for v in verdicts), sum(v.max_points for v in verdicts)
    lines.append("-" * min(len(head) + 30, columns))
    advice = first_part_to_fix(assignment, verdicts)
    if advice:
        lines.append(advice)
    lines.append(f"{'total':<{WIDTH['case']}} {score:>5g} / {total:<3g}  "
                 f"({100 * score / total if total else 0:.0f}%)  in {seconds:.1f} s")
    return "\n".join(lines)


def first_part_to_fix(assignment: str, verdicts: list[Verdict]) -> str | None:
    """When several cases fail: which to fix first (one that no other failing part causes)."""
    from grader.cases import first_to_fix
    from grader.suites import available, load_suite
    if assignment not in available():
        return None
    return first_to_fix(load_suite(assignment), verdicts)


VISIBILITIES = ("visible", "hidden", "after_due_date", "after_published")  # Gradescope's
MAX_NOTES = 20  # notes in results.json's output; each, like each test's output, is one
# cleaned line of at most 500 characters, so the file stays far below Gradescope's 1 MB


def visibility_of(assignment: str, override: str | None = None) -> dict[str, str]:
    """Each case's Gradescope visibility: the suite's `visibility` rules updated by
    `override`, "RULE=VALUE,RULE=VALUE" (e.g. "train/=after_due_date,*=after_published").

    A rule is a case name, a part ("train/": its cases) or "*" (every case); a case takes
    its own rule, else its part's, else "*"'s, else "visible". Unknown values and rules that
    match no case are a ValueError (one line)."""
    from grader.suites import load_suite
    suite = load_suite(assignment)
    rules = dict(suite.visibility)
    for item in filter(None, (override or "").split(",")):
        rule, _, value = item.strip().partition("=")
        rules[rule.strip()] = value.strip()
    names = [c.name for c in suite]
    for rule, value in rules.items():
        if value not in VISIBILITIES:
            raise ValueError(f"visibility {rule}={value}: the value must be one of "
                             f"{', '.join(VISIBILITIES)}")
        if rule != "*" and rule not in names and not any(n.startswith(rule) and rule.endswith("/")
                                                       for n in names):
            raise ValueError(f"visibility {rule}={value}: no case or part {rule!r} in "
                             f"{assignment} (a part ends with /; * means every case)")

    def chosen(name: str) -> str:
        parts = [r for r in rules if r.endswith("/") and name.startswith(r)]
        rule = name if name in rules else max(parts, key=len) if parts else "*"
        return rules.get(rule, "visible")
    return {name: chosen(name) for name in names}


def results(verdicts: list[Verdict], seconds: float, notes: list[str] = (),
            visibility: dict[str, str] | None = None) -> dict:
    """Gradescope's results.json: valid whatever happened, including all-failed. Every text
    is plain (output_format "text"), one line, without escapes or markup.

    `visibility`: {case name: Gradescope visibility} (see `visibility_of`); unnamed cases,
    and the results as a whole, are "visible"."""
    visibility = visibility or {}
    tests = []
    for number, v in enumerate(verdicts, start=1):
        output = clean_message(v.message) or "passed"
        if v.error is not None:
            output += (f" ({v.measure} {v.error:.4f})" if v.measure != "error"
                       else f" (scaled error {v.error:.2e}, tolerance {v.tol:.0e})")
        tests.append({"name": clean_message(v.name), "number": str(number), "score": v.points,
                      "max_score": v.max_points, "status": "passed" if v.passed else "failed",
                      "output": output, "output_format": "text",
                      "visibility": visibility.get(v.name, "visible")})
    summary = [f"{sum(v.passed for v in verdicts)} of {len(verdicts)} cases passed",
               *(clean_message(note) for note in notes[:MAX_NOTES])]
    return {"score": sum(v.points for v in verdicts), "execution_time": round(seconds, 3),
            "output": "; ".join(summary), "output_format": "text",
            "visibility": "visible", "stdout_visibility": "hidden", "tests": tests}


def write_results(path: Path, data: dict) -> None:
    write_atomic(Path(path), (json.dumps(data, indent=2) + "\n").encode())


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def submission_zip(path: Path, files: dict[str, bytes]) -> None:
    """A zip of `files` (archive name -> bytes) plus MANIFEST.json with their SHA-256."""
    manifest = {name: {"sha256": sha256(data), "bytes": len(data)} for name, data in files.items()}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in sorted(files.items()):
            archive.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data)
        archive.writestr(zipfile.ZipInfo("MANIFEST.json", date_time=(2020, 1, 1, 0, 0, 0)),
                         json.dumps(manifest, indent=2, sort_keys=True))
    write_atomic(Path(path), buffer.getvalue())
