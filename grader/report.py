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
    lines.append(f"{'total':<{WIDTH['case']}} {score:>5g} / {total:<3g}  "
                 f"({100 * score / total if total else 0:.0f}%)  in {seconds:.1f} s")
    return "\n".join(lines)


MAX_NOTES = 20  # notes in results.json's output; each, like each test's output, is one
# cleaned line of at most 500 characters, so the file stays far below Gradescope's 1 MB


def results(verdicts: list[Verdict], seconds: float, visibility: str = "visible",
            notes: list[str] = ()) -> dict:
    """Gradescope's results.json: valid whatever happened, including all-failed. Every text
    is plain (output_format "text"), one line, without escapes or markup."""
    tests = []
    for number, v in enumerate(verdicts, start=1):
        output = clean_message(v.message) or "passed"
        if v.error is not None:
            output += (f" ({v.measure} {v.error:.4f})" if v.measure != "error"
                       else f" (scaled error {v.error:.2e}, tolerance {v.tol:.0e})")
        tests.append({"name": clean_message(v.name), "number": str(number), "score": v.points,
                      "max_score": v.max_points, "status": "passed" if v.passed else "failed",
                      "output": output, "output_format": "text", "visibility": visibility})
    summary = [f"{sum(v.passed for v in verdicts)} of {len(verdicts)} cases passed",
               *(clean_message(note) for note in notes[:MAX_NOTES])]
    return {"score": sum(v.points for v in verdicts), "execution_time": round(seconds, 3),
            "output": "; ".join(summary), "output_format": "text",
            "visibility": visibility, "stdout_visibility": "hidden", "tests": tests}


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
