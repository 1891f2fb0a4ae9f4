"""dlkit: the small helper package every assignment imports.

Seeding, device choice, loading your assignment module, relative error, data sets,
training loops with progress bars, plots and gradient checks.
"""
from dlkit.utils import (  # noqa: F401
    REPO_ROOT,
    load_assignment,
    pick_device,
    rel_error,
    seed_everything,
)
