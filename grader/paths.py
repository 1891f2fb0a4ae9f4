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
