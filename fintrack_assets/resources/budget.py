"""A provider's request budget: at most `rate_limit_per_minute` requests in any minute.

The counting is pyrate-limiter's (an `InMemoryBucket` over one `Rate`, the sliding-window
log: never more than the limit in any rolling 60 s, which is how Polygon counts its free
tier's 5 a minute). pyrate-limiter's own blocking `Limiter.try_acquire` waits with
`time.sleep`, so the budget asks the bucket itself (`put_decision`: admitted, or the
milliseconds until a unit frees) and waits with an injectable `sleep`, timed by an
injectable `clock`: tests drive it on a fake clock without sleeping.

One budget per provider instance, shared by every thread and every call of it (a run's
fetch and metadata requests, its batches): the budget holds across them, not per call.
Parallel runs each have their own, which is why `market_data_api`'s pool limit matters
(README, docs/decisions.md).
"""

from __future__ import annotations

import threading
import time

from pyrate_limiter import AbstractClock, Duration, InMemoryBucket, Rate, RateItem

from fintrack_assets.core.display import plural
from fintrack_assets.core.progress import Clock
from fintrack_assets.resources.fetching import Sleep


class _Milliseconds(AbstractClock):
    """pyrate-limiter's clock (integer ms) over ours (float seconds)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def now(self) -> int:
        return round(self.clock() * 1000)


class RateBudget:
    """At most `per_minute` units in any 60 s (None: unlimited, `acquire` returns at once).

    `acquire` blocks the calling thread until its units fit; the wait goes through `sleep`
    (default: wait on the caller's `cancelled` event, so a stopped call stops waiting, else
    `time.sleep`). `waits` and `waited_seconds` count what the budget cost, for metadata."""

    def __init__(
        self,
        per_minute: int | None,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep | None = None,
    ) -> None:
        if per_minute is not None and (isinstance(per_minute, bool) or per_minute < 1):
            raise ValueError(
                f"rate_limit_per_minute must be a whole number >= 1 (or None), got {per_minute!r}"
            )
        self.per_minute = per_minute
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self.acquired = 0  # units granted
        self.waits = 0  # times a caller had to wait for a unit
        self.waited_seconds = 0.0  # summed over callers (threads wait side by side)
        self._bucket: InMemoryBucket | None = None
        if per_minute is not None:
            bucket = InMemoryBucket([Rate(per_minute, Duration.MINUTE)])
            # pyrate-limiter's documented way to give an InMemoryBucket another time source.
            bucket._clock = _Milliseconds(clock)
            self._bucket = bucket

    @classmethod
    def unlimited(cls) -> RateBudget:
        return cls(None)

    @property
    def limited(self) -> bool:
        return self.per_minute is not None

    @property
    def description(self) -> str:
        """`5 requests/min` or `unlimited`: the budget in force, for logs and metadata."""
        if self.per_minute is None:
            return "unlimited"
        return f"{plural(self.per_minute, 'request')}/min"

    def acquire(self, units: int = 1, cancelled: threading.Event | None = None) -> float:
        """Blocks until `units` requests fit the budget, one unit at a time (so more units
        than a minute's budget is a longer wait, never a refusal); returns the seconds
        waited. With `cancelled` set, returns as soon as it is noticed (the caller checks)."""
        waited = 0.0
        if self._bucket is None:
            return waited
        for _ in range(units):
            while True:
                with self._lock:
                    item = RateItem("requests", self._bucket.now())
                    decision = self._bucket.put_decision(item)
                    if decision.allowed:
                        self.acquired += 1
                        self._bucket.leak(item.timestamp)  # forget what left the window
                        break
                    wait_ms = decision.retry_after_ms
                    if wait_ms is None:  # pyrate-limiter: ask the bucket
                        wait_ms = int(self._bucket.waiting(item))  # type: ignore[arg-type]
                    seconds = max(wait_ms, 1) / 1000
                    self.waits += 1
                    self.waited_seconds += seconds
                waited += seconds
                self._wait(seconds, cancelled)
                if cancelled is not None and cancelled.is_set():
                    return waited
        return waited

    def _wait(self, seconds: float, cancelled: threading.Event | None) -> None:
        if self._sleep is not None:
            self._sleep(seconds)
        elif cancelled is not None:
            cancelled.wait(seconds)
        else:
            time.sleep(seconds)

    def metadata(self) -> dict[str, object]:
        """What a run's metadata shows of the budget: the limit in force and what it cost."""
        return {
            "rate_limit_per_minute": self.per_minute,
            "budget": self.description,
            "budget_waits": self.waits,
            "budget_wait_seconds": round(self.waited_seconds, 3),
        }

    def __repr__(self) -> str:
        return f"RateBudget({self.description})"


UNLIMITED = RateBudget.unlimited()
"""The budget of a provider without one (it never changes: nothing is counted)."""


__all__ = ["UNLIMITED", "RateBudget"]
