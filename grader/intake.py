"""Receiving submissions: a folder, a zip (from `make submit`) or a single .py file.

Zips are unpacked by hand, member by member: names that are absolute, climb out with `..`,
or are links are refused, sizes are capped, and only regular files are written. A zip that
cannot be read, whatever the reason (names that are not UTF-8, encrypted members, a
compression method Python lacks such as DEFLATE64, a truncated file), is one line.
"""
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

MAX_MEMBER = 64 << 20     # bytes per unpacked file
MAX_TOTAL = 256 << 20     # bytes per submission
MAX_MEMBERS = 1000


class SubmissionError(Exception):
    """A submission that cannot be taken in: one line, graded as zero, never a crash."""


def safe_name(name: str) -> PurePosixPath | None:
    """The member's relative path, or None if it is absolute or escapes the folder."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or not path.parts or ".." in path.parts or ":" in path.parts[0]:
        return None
    return path


def unpack_zip(archive: Path, target: Path) -> list[str]:
    """Unpack `archive` into `target`; returns the names it refused (never writes them)."""
    refused, total = [], 0
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            if len(members) > MAX_MEMBERS:
                raise SubmissionError(f"{archive.name}: more than {MAX_MEMBERS} files")
            for info in members:
                relative = safe_name(info.filename)
                is_link = stat.S_ISLNK(info.external_attr >> 16)
                if relative is None or is_link:
                    refused.append(info.filename)
                    continue
                if info.is_dir():
                    continue
                total += info.file_size
                if info.file_size > MAX_MEMBER or total > MAX_TOTAL:
                    raise SubmissionError(f"{archive.name}: unpacked size over the limit")
                destination = target.joinpath(*relative.parts)
                destination.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as source, open(destination, "wb") as sink:
                    shutil.copyfileobj(source, sink, 1 << 20)
    except SubmissionError:
        raise
    except Exception as exc:  # noqa: BLE001 - zipfile raises many kinds; each is one line
        raise SubmissionError(f"{archive.name}: not a readable zip ({zip_problem(exc)})") from None
    return refused


def zip_problem(exc: Exception) -> str:
    """What is wrong with a zip, in words (zipfile's own messages vary by Python version)."""
    if isinstance(exc, UnicodeDecodeError):
        return "a file name that is not valid UTF-8"
    if isinstance(exc, NotImplementedError):
        return "a compression method that cannot be read (use ZIP's deflate or store)"
    if isinstance(exc, RuntimeError) and "encrypted" in str(exc):
        return "an encrypted file"
    return f"{type(exc).__name__}: {str(exc)[:200]}"


def locate(submission: Path, assignment: str, workspace: Path) -> tuple[Path, list[str]]:
    """A folder holding `<assignment>.py` for this submission, plus refused zip entries.

    `workspace` is an empty temporary folder owned by the caller (it is deleted after).
    """
    submission = Path(submission)
    if not submission.exists():
        raise SubmissionError(f"{submission}: no such file or folder")
    refused = []
    if submission.is_dir():
        folder = submission
        zips = sorted(submission.glob("*.zip"))
        if not (folder / f"{assignment}.py").is_file() and len(zips) == 1:
            folder = workspace  # Gradescope: the student uploaded the zip from `make submit`
            refused = unpack_zip(zips[0], folder)
    elif submission.suffix == ".py":
        folder = workspace
        shutil.copyfile(submission, folder / f"{assignment}.py")
    elif submission.suffix == ".zip":
        folder = workspace
        refused = unpack_zip(submission, folder)
    else:
        raise SubmissionError(f"{submission.name}: expected a folder, a .zip or a .py file")
    if not (folder / f"{assignment}.py").is_file():
        matches = sorted(folder.rglob(f"{assignment}.py"))  # zipped inside a folder
        if matches:
            folder = matches[0].parent
    return folder, refused


def workspace() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="grader-submission-")
