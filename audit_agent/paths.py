"""Where the shipped data directories (rules/, reports/, seeds/) are found."""
from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """Return the shipped data directory `name`: inside the wheel, else the source tree's top level."""
    installed = PACKAGE_DIR / "data" / name
    if installed.is_dir():
        return installed
    return PACKAGE_DIR.parent / name
