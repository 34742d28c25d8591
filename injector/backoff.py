"""Exponential backoff with jitter: every retry loop in injector uses this, none retries bare."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Backoff"]


@dataclass(slots=True)
class Backoff:
    """Delays that double from ``minimum`` to ``maximum``, each drawn from [d/2, d] ("equal jitter").

    Half the delay is kept so that a fleet of pods restarting together still spreads out while no
    single retry comes immediately after a failure (full jitter can draw ~0 and hammer a backend).
    """

    minimum: float = 1.0
    maximum: float = 60.0
    attempt: int = 0
    #: Uniform in [0, 1); injectable so tests can pin the jitter.
    rand: Callable[[], float] = field(default=random.random, repr=False)

    def next(self) -> float:
        """Returns the next delay in seconds and counts the attempt."""
        ceiling = min(self.maximum, self.minimum * (2 ** min(self.attempt, 30)))
        self.attempt += 1
        return float(ceiling / 2 + (ceiling / 2) * self.rand())

    def reset(self) -> None:
        """Starts again from ``minimum`` (after a success)."""
        self.attempt = 0
