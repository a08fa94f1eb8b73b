"""The type checker's place in CI (issue 13): configured in pyproject.toml over perpbot and
strategies, --strict's flags on core, risk, execution and scanner, run by scripts/test.sh before
pytest, and installed with the test extras."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STRICT_PACKAGES = {"perpbot.core.*", "perpbot.risk.*", "perpbot.execution.*", "perpbot.scanner.*"}
STRICT_FLAGS = {
    "disallow_any_generics", "disallow_subclassing_any", "disallow_untyped_calls", "disallow_untyped_defs",
    "disallow_incomplete_defs", "check_untyped_defs", "disallow_untyped_decorators", "warn_unused_ignores",
    "warn_return_any", "no_implicit_reexport", "strict_equality", "extra_checks",
}


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_mypy_covers_both_packages_and_is_strict_on_the_four():
    mypy = _pyproject()["tool"]["mypy"]
    assert set(mypy["files"]) == {"perpbot", "strategies"}
    strict = [o for o in mypy["overrides"] if STRICT_PACKAGES <= set(o["module"])]
    assert strict, "no override covers core, risk, execution and scanner"
    assert all(strict[0].get(flag) is True for flag in STRICT_FLAGS), strict[0]


def test_mypy_is_a_test_extra_and_runs_before_pytest():
    extras = _pyproject()["project"]["optional-dependencies"]["test"]
    assert any(e.startswith("mypy") for e in extras)
    lines = (ROOT / "scripts" / "test.sh").read_text(encoding="utf-8").splitlines()
    mypy = lines.index(".venv/bin/python -m mypy perpbot strategies")
    pytest = next(i for i, line in enumerate(lines) if "-m pytest" in line)
    assert mypy < pytest
