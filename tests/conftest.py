import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def run_uids(monkeypatch) -> set:
    """The per-run uids this test's workers got (other graders may be running meanwhile)."""
    from grader import isolation
    got, allocate = set(), isolation.RunUid.__init__

    def recording(self):
        allocate(self)
        got.add(self.uid)

    monkeypatch.setattr(isolation.RunUid, "__init__", recording)
    return got
