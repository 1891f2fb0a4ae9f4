"""Where things live in the repository (or in an unpacked release bundle)."""
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENTS = ROOT / "assignments"
SOLUTIONS = ROOT / "solutions"
FIXTURES = ROOT / "fixtures"
NOTEBOOKS = ROOT / "notebooks"
SUBMISSIONS = ROOT / "submissions"


def fixture_file(assignment: str, kind: str) -> Path:
    """kind: public | autograder_inputs | autograder_expected."""
    return FIXTURES / assignment / f"{kind}.pt"


def shown(path: Path) -> Path:
    """A path as messages show it: relative to the repository when inside it."""
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
