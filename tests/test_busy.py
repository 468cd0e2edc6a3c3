"""Actors' shares of time (raydistill.pipeline.busy): the clock, the summary and the warning."""

from __future__ import annotations

import pytest

from raydistill.pipeline import busy
from raydistill.pipeline.busy import ActorClock, busy_summary, idle_warning


class Ticks:
    """A monotonic clock the test moves by hand."""

    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ticks(monkeypatch):
    clock = Ticks()
    monkeypatch.setattr(busy.time, "monotonic", clock)
    return clock


def one_call(clock: ActorClock, ticks: Ticks, wait: float, other: float, model: float) -> dict:
    """Wait ``wait`` s for the call, spend ``other`` s outside the model and ``model`` s in it;
    returns the call's first output row."""
    ticks.now += wait
    clock.start_call()
    ticks.now += other
    with clock.model():
        ticks.now += model
    return {name: values[0] for name, values in clock.columns(2).items()}


def test_the_clock_splits_an_actors_span_into_model_other_and_wait(ticks):
    clock = ActorClock("node:1")
    rows = [one_call(clock, ticks, wait, other, model)
            for wait, other, model in ((5.0, 1.0, 4.0), (3.0, 1.0, 6.0), (1.0, 0.0, 4.0))]
    assert rows[-1]["actor_calls"] == 3
    summary = busy_summary(rows)
    # The span starts at the first call (the 5 s before it are the pool filling): 20 s.
    assert summary["actors"] == [{"actor": "node:1", "calls": 3, "seconds": 20.0,
                                  "busy_share": 0.7, "other_share": 0.1, "wait_share": 0.2}]
    assert summary["busy_share_min"] == 0.7


def test_the_summary_keeps_each_actors_last_totals_whatever_the_row_order(ticks):
    first, second = ActorClock("a"), ActorClock("b")
    rows = [one_call(first, ticks, 0, 0, 1.0), one_call(second, ticks, 0, 0, 1.0),
            one_call(first, ticks, 1.0, 0, 2.0)]
    summary = busy_summary(list(reversed(rows)))
    assert [(a["actor"], a["calls"]) for a in summary["actors"]] == [("a", 2), ("b", 1)]
    # a: span from its first call to its last end = 1 + 1 (b's call) + 1 + 2 = 5 s, 3 s in model.
    assert summary["actors"][0]["busy_share"] == 0.6
    assert summary["busy_share_min"] == 0.6
    assert busy_summary([]) == {"actors": [], "busy_share_min": None}


def test_a_model_block_that_raises_still_counts_its_time(ticks):
    clock = ActorClock("a")
    clock.start_call()
    with pytest.raises(RuntimeError), clock.model():
        ticks.now += 3.0
        raise RuntimeError("out of memory")
    assert clock.model_s == 3.0


def actor(seconds: float, busy_share: float, wait_share: float) -> dict:
    return {"actor": "n:1", "calls": 10, "seconds": seconds, "busy_share": busy_share,
            "other_share": round(1 - busy_share - wait_share, 3), "wait_share": wait_share}


def test_an_actor_idle_over_a_tenth_of_a_long_span_is_reported_with_its_cause():
    summary = {"actors": [actor(120, 0.6, 0.35), actor(120, 0.95, 0.05)]}
    message = idle_warning(summary, "embed", "add CPUs")
    assert message.startswith("embed: 1 of 2 actors were idle more than 10% of their time")
    assert "60% in the model, 35% waiting between calls, 5% in other work" in message
    assert message.endswith("add CPUs")


def test_busy_actors_and_short_spans_are_not_reported():
    assert idle_warning({"actors": [actor(120, 0.92, 0.08)]}, "generate", "x") is None
    assert idle_warning({"actors": [actor(20, 0.2, 0.8)]}, "generate", "x") is None
    assert idle_warning({"actors": []}, "generate", "x") is None
