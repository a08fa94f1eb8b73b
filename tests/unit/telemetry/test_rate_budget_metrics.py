"""/metrics shows the venues' request budget, read from its snapshot at scrape time: usage and limit per
window, the Retry-After still running, the stop answers seen and the reads deferred."""

from perpbot.execution.rate_budget import ORDER, RateBudget
from perpbot.execution.rate_limits import venue_limits
from perpbot.telemetry.metrics import Metrics

NOW = 1_700_000_040.0


def test_the_budget_series_follow_the_budget_at_each_scrape():
    budget = RateBudget(venue_limits(), clock=lambda: NOW)
    metrics = Metrics()
    metrics.watch_rate_budget(budget.snapshot)
    metrics.watch_rate_budget(budget.snapshot)  # wired twice: still one set of series
    budget.charge("binance", ORDER)
    budget.observe("okx", 429, {"Retry-After": "3"}, ORDER)
    budget.read_wait("okx", "positions")
    text = metrics.render().decode()
    assert 'perpbot_rate_budget_used{exchange="binance",window="orders_10s"} 1.0' in text
    assert 'perpbot_rate_budget_limit{exchange="binance",window="weight_1m"} 2400.0' in text
    assert 'perpbot_rate_budget_blocked_seconds{exchange="okx"} 3.0' in text
    assert 'perpbot_rate_limit_responses_total{exchange="okx",status="429"} 1.0' in text
    assert 'perpbot_rate_budget_reads_deferred_total{exchange="okx"} 1.0' in text
    budget.charge("binance", ORDER)
    assert 'perpbot_rate_budget_used{exchange="binance",window="orders_10s"} 2.0' in metrics.render().decode()
