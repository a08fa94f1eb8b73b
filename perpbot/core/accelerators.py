"""Loading an optional C accelerator: the compiled module, or None where it was not built (no compiler
at install) or PERPBOT_PURE_PYTHON=1 asks for the pure-Python paths. Each layer loads its own
(perpbot.book.l2_accel, perpbot.venues.okx.parse, perpbot.scanner.tops); nobody imports another
package's private extension."""

from __future__ import annotations

import importlib
import os
from types import ModuleType


def load_accelerator(module: str) -> ModuleType | None:
    if os.environ.get("PERPBOT_PURE_PYTHON") == "1":
        return None
    try:
        return importlib.import_module(module)
    except ImportError:  # not built: the pure-Python twin does the same work
        return None
