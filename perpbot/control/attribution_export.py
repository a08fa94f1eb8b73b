"""The attribution summary's export (GET /api/pnl/attribution?format=csv): rows as CSV, one line per
UTC day, strategy and venue, the columns of perpbot.portfolio.attribution.SUMMARY_COLUMNS."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from perpbot.portfolio.attribution import SUMMARY_COLUMNS

MAX_ATTRIBUTION_DAYS = 90
FORMATS = ("json", "csv")


def export_format(raw: str | None) -> str:
    """The asked format (json when none); 400 for anything else."""
    form = (raw or "json").lower()
    if form not in FORMATS:
        raise web.HTTPBadRequest(reason=f"format must be one of {', '.join(FORMATS)}")
    return form


def summary_csv(rows: Iterable[dict[str, Any]]) -> str:
    """The summary rows as CSV with a header line (amounts as their exact decimal strings)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(SUMMARY_COLUMNS), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in SUMMARY_COLUMNS})
    return out.getvalue()


def csv_name(days: int) -> str:
    return f"perpbot-pnl-attribution-{days}d.csv"
