"""The import contracts in pyproject.toml ([tool.importlinter]) hold for the repo, and `lint-imports`
really fails when a forbidden import is added (checked on a copy of the packages, never on the repo)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from ops.conftest import REPO

CONTRACTS = (
    "Venue packages do not import each other",
    "Pure packages import no network, database or venue-client library",
    "Pure packages reach prometheus_client only through the Metrics object",
    "Each stage imports only earlier stages",
    "Only the risk gate mints ApprovedOrders",
)


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """Run lint-imports on the packages under `root` with root's pyproject.toml (no cache files written)."""
    beside = Path(sys.executable).with_name("lint-imports")
    command = str(beside) if beside.exists() else shutil.which("lint-imports")
    assert command, "lint-imports is not installed (it is in the test extra)"
    # The packages under `root` must win over the editable install of the repo.
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([command, "--no-cache", "--no-logo", "--config", str(root / "pyproject.toml")],
                          cwd=root, env=env, capture_output=True, text=True, timeout=120)


def _flat(output: str) -> str:
    # lint-imports wraps long contract names over lines.
    return " ".join(output.split())


def test_every_import_contract_is_kept_by_the_repo():
    result = lint_imports(REPO)
    output = _flat(result.stdout + result.stderr)
    assert result.returncode == 0, output
    for name in CONTRACTS:
        assert name in output, name
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in output


def test_lint_imports_fails_on_each_kind_of_forbidden_import(tmp_path):
    for package in ("perpbot", "strategies"):
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    injected = {
        "perpbot/venues/okx/parse.py": "import perpbot.venues.binance.parse",  # venue -> venue
        "perpbot/scanner/depth.py": "import aiohttp",  # pure -> network library
        "perpbot/risk/rules.py": "import prometheus_client",  # pure -> metrics library, directly
        "perpbot/book/l2.py": "import perpbot.execution.engine",  # lower layer -> higher layer
        "perpbot/execution/orders.py": "import perpbot.core._mint_key",  # minting outside the risk gate
    }
    for relative, line in injected.items():
        path = tmp_path / relative
        path.write_text(path.read_text() + f"\n{line}  # injected by the test\n")

    result = lint_imports(tmp_path)
    output = _flat(result.stdout + result.stderr)
    assert result.returncode != 0, output
    assert f"Contracts: 0 kept, {len(CONTRACTS)} broken." in output
    assert "perpbot.venues.okx.parse -> perpbot.venues.binance.parse" in output
    assert "perpbot.scanner.depth -> aiohttp" in output
    assert "perpbot.execution.orders -> perpbot.core._mint_key" in output
    assert "perpbot.risk.rules -> prometheus_client" in output
    assert "perpbot.book.l2 -> perpbot.execution.engine" in output
