"""Exponential backoff with jitter: every retry loop in injector uses this, none retries bare."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Backoff"]


@dataclass(slots=True)
class Backoff:
    """Delays whose cap doubles from ``minimum`` to ``maximum``, each drawn below the cap.

    Equal jitter (the default) draws from [cap/2, cap]: no retry comes right after a failure.
    ``full_jitter`` draws from [minimum, cap]: the retries of a fleet that failed together (a
    backend outage) spread over the whole window, so its recovery is not a herd; ``minimum`` stays
    the floor, so no retry hammers a backend at ~0 s.
    """

    minimum: float = 1.0
    maximum: float = 60.0
    attempt: int = 0
    #: Uniform in [0, 1); injectable so tests can pin the jitter.
    rand: Callable[[], float] = field(default=random.random, repr=False)
    full_jitter: bool = False

    def next(self) -> float:
        """Returns the next delay in seconds and counts the attempt."""
        ceiling = min(self.maximum, self.minimum * (2 ** min(self.attempt, 30)))
        self.attempt += 1
        low = min(self.minimum, ceiling) if self.full_jitter else ceiling / 2
        return float(low + (ceiling - low) * self.rand())

    def reset(self) -> None:
        """Starts again from ``minimum`` (after a success)."""
        self.attempt = 0
