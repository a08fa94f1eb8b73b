"""The control API's audit trail in a real SQLite journal (perpbot.journal.audit): entries written in
batches off the request path, read back in order after a flush, raw header bytes stored escaped,
the queue bounded under a flood, and the table shared with the trading journal's file."""

from __future__ import annotations

from perpbot.journal.audit import AuditEntry, AuditTrail
from perpbot.journal.sqlite import Journal


def entry(ts: float, path: str = "/api/trading/pause", status: int = 200, **kw) -> AuditEntry:
    return AuditEntry(ts=ts, method="POST", path=path, scope=kw.pop("scope", "trade"), remote="127.0.0.1",
                      origin=kw.pop("origin", None), status=status, outcome=kw.pop("outcome", "ok"), **kw)


async def test_entries_are_read_back_in_order_since_a_time_and_survive_a_reopen(tmp_path):
    path = str(tmp_path / "journal.sqlite")
    trail = AuditTrail(path)
    await trail.open()
    try:
        for i in range(5):
            trail.record(entry(100.0 + i, status=200 if i % 2 else 401, idempotency_key=f"k{i}"))
        got = await trail.since(102.0)
        assert [(e.ts, e.status, e.idempotency_key) for e in got] == [(102.0, 401, "k2"), (103.0, 200, "k3"),
                                                                       (104.0, 401, "k4")]
    finally:
        await trail.close()
    again = AuditTrail(path)
    await again.open()
    try:
        assert len(await again.since(0.0)) == 5
    finally:
        await again.close()


async def test_raw_header_bytes_are_stored_escaped_and_long_values_bounded(tmp_path):
    trail = AuditTrail(str(tmp_path / "journal.sqlite"))
    await trail.open()
    try:
        trail.record(entry(1.0, origin="http://\udcff\udcfeevil", outcome="x" * 5000, status=401))
        [got] = await trail.since(0.0)
        assert got.origin == "http://\\xff\\xfeevil" and len(got.outcome) == 300
    finally:
        await trail.close()


async def test_a_flood_beyond_the_queue_drops_the_oldest_and_counts_them(tmp_path):
    trail = AuditTrail(str(tmp_path / "journal.sqlite"), max_pending=10)
    await trail.open()
    try:
        for i in range(25):  # no await in between: the writer cannot run, the queue overflows
            trail.record(entry(float(i), status=401))
        got = await trail.since(0.0)
        assert trail.dropped == 15 and [e.ts for e in got] == [float(i) for i in range(15, 25)]
    finally:
        await trail.close()


async def test_the_trail_and_the_trading_journal_share_one_file(tmp_path):
    path = str(tmp_path / "journal.sqlite")
    trail = AuditTrail(path)
    await trail.open()
    journal = Journal(path)
    await journal.open()  # the migrations already applied by the trail: nothing to do, no error
    try:
        trail.record(entry(5.0))
        assert len(await trail.since(0.0)) == 1
        async with journal.db.execute("SELECT COUNT(*) FROM control_audit") as cursor:
            assert (await cursor.fetchone())[0] == 1
    finally:
        await journal.close()
        await trail.close()
