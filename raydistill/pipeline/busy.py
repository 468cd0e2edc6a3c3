"""Where a Ray Data actor's time goes: in its model, elsewhere in its calls, or between calls.

A GPU actor (generate's Latte, embed's VideoMAE or C3D) should spend its time in its model's
call (which includes the model's own copies to and from the device). Time between its calls is
time it waited for input (a decode task behind), or for Ray Data to take its output and hand it
the next batch (Ray Data converts batches between Arrow and numpy on the actor, between calls);
time in a call but outside the model is other CPU work done on the actor (encoding, writing).
Each actor keeps an :class:`ActorClock`, returns its running totals with every output row, and
:func:`busy_summary` turns the last totals of each actor into the stage summary's ``actors``
entry. Measured from the start of an actor's first call to the end of its last (the pool
filling and the model loading are not counted).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator

CLOCK_COLUMNS = ("actor", "actor_calls", "actor_span_s", "actor_call_s", "actor_model_s")


class ActorClock:
    """Running totals of one actor: its calls, the seconds inside them and inside its model."""

    def __init__(self, name: str | None = None):
        self.name = name or f"{os.uname().nodename}:{os.getpid()}"
        self.calls = 0
        self.first_start: float | None = None
        self.call_started = 0.0
        self.call_s = 0.0
        self.model_s = 0.0

    def start_call(self) -> None:
        """Mark the start of a call (the first one starts the span)."""
        self.call_started = time.monotonic()
        if self.first_start is None:
            self.first_start = self.call_started

    @contextlib.contextmanager
    def model(self) -> Iterator[None]:
        """Count the block's seconds as model time (its results must be on the host at the end,
        so that a GPU's queued work is counted)."""
        started = time.monotonic()
        try:
            yield
        finally:
            self.model_s += time.monotonic() - started

    def columns(self, rows: int) -> dict[str, list]:
        """End the call; the totals so far as Ray Data columns of ``rows`` output rows."""
        now = time.monotonic()
        self.calls += 1
        self.call_s += now - self.call_started
        span = now - (self.first_start if self.first_start is not None else now)
        values = (self.name, self.calls, span, self.call_s, self.model_s)
        return {name: [value] * rows for name, value in zip(CLOCK_COLUMNS, values)}


def busy_summary(rows: list[dict]) -> dict:
    """The actors' shares of time from the clock columns of a stage's output rows.

    Returns ``{"actors": [{actor, calls, seconds, busy_share, other_share, wait_share}],
    "busy_share_min": float | None}``: per actor, ``busy_share`` is the share of its span in the
    model, ``other_share`` in its calls outside the model, ``wait_share`` between calls.
    """
    last: dict[str, dict] = {}
    for row in rows:
        held = last.get(row["actor"])
        if held is None or row["actor_calls"] > held["actor_calls"]:
            last[row["actor"]] = row
    actors = [actor_shares(row) for _, row in sorted(last.items())]
    return {"actors": actors,
            "busy_share_min": min((a["busy_share"] for a in actors), default=None)}


def actor_shares(row: dict) -> dict:
    """One actor's final totals as shares of its span (rounded to 3 places)."""
    span = float(row["actor_span_s"])
    if span <= 0:  # one call: its span is the call itself
        span = float(row["actor_call_s"]) or 1.0
    call, model = float(row["actor_call_s"]), float(row["actor_model_s"])
    return {"actor": row["actor"], "calls": int(row["actor_calls"]), "seconds": round(span, 3),
            "busy_share": round(model / span, 3),
            "other_share": round(max(0.0, call - model) / span, 3),
            "wait_share": round(max(0.0, span - call) / span, 3)}


IDLE_LIMIT = 0.10
"""Issue 21: a GPU actor idle (waiting, or working outside its model) more than this share of
its time is a defect to report."""
MIN_SPAN_S = 60.0
"""Shorter spans are not judged: a pool's first and last calls weigh too much in them."""


def idle_warning(summary: dict, stage: str, cause: str) -> str | None:
    """A warning when an actor of ``summary`` (:func:`busy_summary`) ran for at least
    :data:`MIN_SPAN_S` and was idle more than :data:`IDLE_LIMIT` of it, naming ``cause`` (what
    the stage's actors wait for and how to give them more); None otherwise."""
    judged = [actor for actor in summary["actors"] if actor["seconds"] >= MIN_SPAN_S]
    idle = [actor for actor in judged if actor["wait_share"] + actor["other_share"] > IDLE_LIMIT]
    if not idle:
        return None
    worst = max(idle, key=lambda actor: actor["wait_share"] + actor["other_share"])
    return (f"{stage}: {len(idle)} of {len(summary['actors'])} actors were idle more than "
            f"{IDLE_LIMIT:.0%} of their time (worst: {worst['busy_share']:.0%} in the model, "
            f"{worst['wait_share']:.0%} waiting between calls, {worst['other_share']:.0%} in "
            f"other work); {cause}")
