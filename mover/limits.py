"""Per-endpoint limits: concurrency, bandwidth (token bucket) and a circuit breaker.

The mover talks to several stores; one that throttles or fails must slow down only the moves that touch it. Time
comes from an injectable clock so the logic is testable without sleeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """Bandwidth limit: `rate` bytes/s with bursts up to `capacity` bytes. rate <= 0 means unlimited."""

    def __init__(self, rate: float, capacity: float | None = None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.rate = rate
        self.capacity = capacity if capacity is not None else max(rate, 1.0)
        self.tokens = self.capacity
        self.clock, self.sleep = clock, sleep
        self.stamp = clock()
        self.lock = threading.Lock()

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def acquire(self, amount: float) -> float:
        """Take `amount` bytes worth of tokens, waiting as needed; returns the seconds waited.
        A request larger than the bucket is let through once the bucket is full (then goes into debt)."""
        if self.rate <= 0:
            return 0.0
        waited = 0.0
        while True:
            with self.lock:
                self._refill()
                need = min(amount, self.capacity)
                if self.tokens >= need:
                    self.tokens -= amount  # may go negative: later callers pay the debt
                    return waited
                delay = (need - self.tokens) / self.rate
            self.sleep(delay)
            waited += delay


class CircuitBreaker:
    """Closed -> open after `threshold` consecutive failures; open for `cooldown_s`; then half-open: one probe
    call at a time, success closes it, failure re-opens it."""

    def __init__(self, threshold: int = 5, cooldown_s: float = 2.0, clock: Callable[[], float] = time.monotonic):
        self.threshold, self.cooldown_s, self.clock = threshold, cooldown_s, clock
        self.failures = 0
        self.opened_at: float | None = None
        self.probing = False
        self.opens = 0  # how many times it opened (for stats)
        self.lock = threading.Lock()

    @property
    def state(self) -> str:
        with self.lock:
            return self._state()

    def _state(self) -> str:
        if self.opened_at is None:
            return "closed"
        if self.clock() - self.opened_at >= self.cooldown_s:
            return "half_open"
        return "open"

    def wait_s(self) -> float:
        """0 when a call may go ahead now (and, if half-open, claims the single probe slot); else how long to
        wait before asking again."""
        with self.lock:
            st = self._state()
            if st == "closed":
                return 0.0
            if st == "open":
                return max(0.01, self.cooldown_s - (self.clock() - self.opened_at))
            if self.probing:
                return min(0.05, self.cooldown_s)
            self.probing = True
            return 0.0

    def success(self) -> None:
        with self.lock:
            self.failures, self.opened_at, self.probing = 0, None, False

    def failure(self) -> None:
        with self.lock:
            self.failures += 1
            if self.probing or (self.opened_at is None and self.failures >= self.threshold):
                if self.opened_at is None or self.probing:
                    self.opens += 1
                self.opened_at = self.clock()
            self.probing = False


class EndpointGuard:
    """Everything that limits calls to one endpoint."""

    def __init__(self, concurrency: int, bandwidth_bytes_s: float, breaker_threshold: int,
                 breaker_cooldown_s: float):
        self.slots = threading.BoundedSemaphore(max(1, concurrency))
        self.bandwidth = TokenBucket(bandwidth_bytes_s, capacity=max(bandwidth_bytes_s, 8 * 1024 * 1024))
        self.breaker = CircuitBreaker(breaker_threshold, breaker_cooldown_s)
