"""Make the drills' helpers importable by their module names (the suite uses importlib mode)."""

from __future__ import annotations

import sys
from pathlib import Path

_TESTS = Path(__file__).resolve().parents[1]
for _folder in (Path(__file__).resolve().parent, _TESTS / "workers" / "session"):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))
