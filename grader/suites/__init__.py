"""One module per assignment, each defining `suite` (a grader.cases.Suite)."""
import importlib
import pkgutil


def available() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__))


def load_suite(assignment: str):
    if assignment not in available():
        raise ValueError(f"unknown assignment {assignment!r}; known: {', '.join(available())}")
    return importlib.import_module(f"grader.suites.{assignment}").suite
