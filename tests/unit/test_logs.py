"""fastchat.logs: the line budget for per-connection lines."""

from __future__ import annotations

from fastchat.logs import LineBudget


def test_a_budget_tells_so_many_lines_a_period_and_counts_the_rest() -> None:
    budget = LineBudget(3, period=1.0)
    told = [budget.take(10.0 + i * 0.01, "opened") for i in range(5)]
    assert told == [True, True, True, False, False]
    assert budget.take(10.5, "closed") is False
    assert budget.pop_untold() == {"opened": 2, "closed": 1}
    assert budget.pop_untold() == {}
    # A new period: three more lines.
    assert [budget.take(11.0, "closed") for _ in range(4)] == [True, True, True, False]
    assert budget.untold == {"closed": 1}
