"""Who handed in each submission: Gradescope's export metadata, or a roster CSV.

Gradescope's "Export Submissions" zip holds one folder per submission (`submission_123456/`)
and, beside them, `submission_metadata.yml`, which maps each folder name to its record:

    submission_123456:
      :submitters:
      - :name: Ada Lovelace
        :sid: '1815'
        :email: ada@example.edu
      :created_at: 2026-03-01 10:00:00.000000000 -08:00

Its keys are Ruby symbols (a leading colon, dropped here) and some values carry Ruby tags
(read as plain values). A `submission_metadata.yml` inside a submission folder may hold that
submission's record alone. A roster CSV has a header naming `submission` (the submitted
file or folder name, or its stem) and any of `id` (or `sid`, `student id`), `name`,
`email`; without a `submission` column, rows match submissions named after the student id
(`1815.zip`). A group submission has several submitters.
"""
import csv
from dataclasses import dataclass
from pathlib import Path

import yaml

METADATA = "submission_metadata.yml"
COLUMNS = {"id": ("id", "sid", "student id", "student_id", "studentid"),
           "name": ("name", "full name", "student name"),
           "email": ("email", "e-mail", "email address"),
           "submission": ("submission", "file", "folder")}


class RosterError(Exception):
    """A roster or metadata file that cannot be used: one line, before anyone is graded."""


@dataclass(frozen=True)
class Student:
    sid: str = ""
    name: str = ""
    email: str = ""


class MetadataLoader(yaml.SafeLoader):
    """PyYAML's safe loader, reading Ruby-tagged values (`!ruby/object:BigDecimal ...`) as
    the plain scalars, lists and mappings they are written as: nothing is constructed."""


def plain(loader, _suffix, node):
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)


MetadataLoader.add_multi_constructor("!", plain)


def text(value) -> str:
    """One short printable line (these values end up in CSV cells and HTML)."""
    value = "" if value is None else str(value)
    flat = "".join(ch if ch.isprintable() else " " for ch in value)
    return flat.strip()[:200]


def key(name) -> str:
    return text(name).lstrip(":").strip().lower()


def submitters(record) -> list[Student]:
    """The students of one metadata record (an empty list when it names none)."""
    if not isinstance(record, dict):
        return []
    fields = {key(k): v for k, v in record.items()}
    people = fields.get("submitters") or []
    found = []
    for person in people if isinstance(people, list) else []:
        if isinstance(person, dict):
            info = {key(k): v for k, v in person.items()}
            found.append(Student(text(info.get("sid")), text(info.get("name")),
                                 text(info.get("email"))))
    return found


def read_metadata(path: Path) -> dict:
    """A submission_metadata.yml, parsed; RosterError when it is not readable YAML."""
    try:
        data = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=MetadataLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where else ""
        raise RosterError(f"{path}: not readable submission metadata{line}: "
                          f"{type(exc).__name__}") from None
    return data if isinstance(data, dict) else {}


def read_roster(path: Path) -> list[dict]:
    """The rows of a roster CSV as {"id", "name", "email", "submission"} (missing: "")."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise RosterError(f"{path}: not a readable CSV ({type(exc).__name__})") from None
    header = {key(name): name for name in (rows[0].keys() if rows else [])}
    found = {field: next((header[a] for a in aliases if a in header), None)
             for field, aliases in COLUMNS.items()}
    if found["submission"] is None and found["id"] is None:
        raise RosterError(f"{path}: the header needs a `submission` or an `id` column "
                          f"(found: {', '.join(header) or 'nothing'})")
    return [{field: text(row.get(column)) if column else "" for field, column in found.items()}
            for row in rows]


def names_of(path: Path) -> set[str]:
    """The names a roster or metadata entry may use for a submission: name and stem."""
    return {path.name, path.stem} if path.is_file() else {path.name}


def identities(submissions: list[Path], roster: Path | None = None,
               metadata: Path | None = None) -> dict[Path, list[Student]]:
    """{submission: its students} for those that a roster, the given metadata file, or a
    `submission_metadata.yml` inside or beside the submission names (others are absent)."""
    if metadata and not Path(metadata).is_file():
        raise RosterError(f"--metadata {metadata}: no such file")
    rows = read_roster(roster) if roster else []
    parsed = {}

    def metadata_at(path: Path) -> dict:
        if path not in parsed:
            parsed[path] = read_metadata(path)
        return parsed[path]

    found = {}
    for submission in map(Path, submissions):
        names = names_of(submission)
        matches = [row for row in rows if (row["submission"] or row["id"]) in names]
        if matches:
            found[submission] = [Student(r["id"], r["name"], r["email"]) for r in matches]
            continue
        files = [metadata] if metadata else [submission.parent / METADATA]
        if submission.is_dir():
            files.insert(0, submission / METADATA)
        for file in files:
            if not Path(file).is_file():
                continue
            data = metadata_at(Path(file))
            record = next((data[n] for n in names if n in data), None)
            if record is None and file == submission / METADATA:
                record = data  # the submission's own record
            if submitters(record):
                found[submission] = submitters(record)
                break
    return found
