"""Receiving submissions: a folder, a zip (from `make submit`) or a single .py file.

Zips are unpacked by hand, member by member: names that are absolute, climb out with `..`,
or are links are refused, sizes are capped, and only regular files are written. A zip that
cannot be read, whatever the reason (names that are not UTF-8, encrypted members, a
compression method Python lacks such as DEFLATE64, a truncated file), is one line.
"""
import os
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


MAX_ZIPS = 4      # zips one submitted folder may hold
MAX_WALKED = 10_000  # entries of a submitted folder looked at
MAX_LISTED = 10   # file names a refusal lists


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

    A submission has one meaning or is refused (SubmissionError, one line): a .py file is
    the module; a zip, or a folder and the zips in it (Gradescope: the zip from `make
    submit`), must hold one `<assignment>.py` anywhere inside. Copies with identical bytes
    count once; different versions (draft/ and final/, a .py beside a zip, two zips) are
    refused listing them, and no module at all is refused listing the files that were there.
    `workspace` is an empty temporary folder owned by the caller (it is deleted after).
    """
    submission, workspace = Path(submission), Path(workspace)
    module = f"{assignment}.py"
    if not submission.exists():
        raise SubmissionError(f"{submission}: no such file or folder")
    if submission.is_file() and submission.suffix == ".py":
        shutil.copyfile(submission, workspace / module)
        return workspace, []
    if submission.is_file() and submission.suffix != ".zip":
        raise SubmissionError(f"{submission.name}: expected a folder, a .zip or a .py file")
    files, zips, refused = [], [], []
    if submission.is_dir():
        files = walk(submission, submission, "")
        zips = [(label, path) for label, path in files if path.suffix == ".zip"]
    else:
        zips = [(submission.name, submission)]
    if len(zips) > MAX_ZIPS:
        raise SubmissionError(f"{len(zips)} zips in the submission "
                              f"({listed([label for label, _ in zips])}); "
                              f"expected one {module}, or one zip from `make submit` holding it")
    for number, (label, archive) in enumerate(zips):
        target = workspace / f"zip{number}"
        target.mkdir()
        refused += unpack_zip(archive, target)
        files += walk(target, target, f"{label}:")
    found = [(label, path) for label, path in files if path.name == module]
    if not found:
        names = [label for label, _ in files]
        raise SubmissionError(f"missing file: no {module} in the submission; "
                              + (f"it holds {listed(names)}" if names else "it is empty"))
    versions = {content_key(label, path) for label, path in found}
    if len(versions) > 1:
        raise SubmissionError(f"ambiguous submission: {len(versions)} different versions of "
                              f"{module} ({listed([label for label, _ in found])}); expected "
                              f"exactly one {module}, or one zip from `make submit` holding it")
    return found[0][1].parent, refused


def walk(folder: Path, root: Path, prefix: str) -> list[tuple[str, Path]]:
    """(label, path) of the regular files and links under `folder`, labelled by their path
    below `root` after `prefix`; links to folders are not followed."""
    found = []
    for place, folders, names in os.walk(folder):
        folders.sort()
        for name in sorted(names):
            path = Path(place) / name
            found.append((prefix + path.relative_to(root).as_posix(), path))
            if len(found) >= MAX_WALKED:
                return found
    return found


def content_key(label: str, path: Path):
    """The module's bytes (copies count once); a link or an unreadable file is its own."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return ("unreadable", label)
    with os.fdopen(fd, "rb") as handle:
        return handle.read(MAX_MEMBER + 1)


def listed(names: list[str]) -> str:
    """At most MAX_LISTED names, each printable and short, and how many more there were."""
    shown = ["".join(ch if ch.isprintable() else "?" for ch in name)[:80]
             for name in names[:MAX_LISTED]]
    more = f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else ""
    return ", ".join(shown) + more


def workspace() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="grader-submission-")
