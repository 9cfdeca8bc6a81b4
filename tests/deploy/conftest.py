"""Make ``deploy_files`` (the deployment-file readers) importable by the tests beside it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_PATH = Path(__file__).with_name("deploy_files.py")
if "deploy_files" not in sys.modules:
    _spec = importlib.util.spec_from_file_location("deploy_files", _PATH)
    assert _spec is not None
    assert _spec.loader is not None
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["deploy_files"] = _module
    _spec.loader.exec_module(_module)
