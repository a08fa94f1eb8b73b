"""Loads the shared market helpers (tests/unit/scanner/market_helpers.py) as `market_helpers`."""

import importlib.util
import sys
from pathlib import Path

if "market_helpers" not in sys.modules:
    _path = Path(__file__).resolve().parents[1] / "scanner" / "market_helpers.py"
    _spec = importlib.util.spec_from_file_location("market_helpers", _path)
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["market_helpers"] = _module
    _spec.loader.exec_module(_module)
