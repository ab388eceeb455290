"""Group commit for requests: concurrent callers that each want one key handled share one batched request.

Used for deleting dropped replicas: after their commits, many small moves each delete one replica in the same
location bucket; one DeleteObjects (up to 1,000 keys) does the work of all of them, so the store answers one
request instead of one per move. There is no timer and no background thread: a caller that finds no request in
flight sends everything pending (its own key included); callers arriving meanwhile wait and form the next
batch. A caller returns only when its own key was handled, with that key's own error if it failed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Slot:
    key: str
    done: bool = False
    error: BaseException | None = None


class KeyBatcher:
    """`send(keys) -> {key: error or None}` handles a batch; a key it leaves out of the answer counts as done.
    If `send` raises, every key of that batch gets the exception."""

    def __init__(self, send: Callable[[list[str]], dict[str, BaseException | None]], max_batch: int = 1000):
        self.send = send
        self.max_batch = max(1, max_batch)
        self._cond = threading.Condition()
        self._pending: list[_Slot] = []
        self._busy = False
        self.batches = 0  # requests sent (for stats and tests)

    def run(self, key: str) -> None:
        slot = _Slot(key)
        with self._cond:
            self._pending.append(slot)
        while True:
            with self._cond:
                while self._busy and not slot.done:
                    self._cond.wait()
                if slot.done:
                    break
                self._busy = True
                batch, self._pending = self._pending[:self.max_batch], self._pending[self.max_batch:]
            try:
                errors = self.send([s.key for s in batch])
            except BaseException as exc:  # noqa: BLE001 - handed to every caller of the batch
                errors = {s.key: exc for s in batch}
            with self._cond:
                self.batches += 1
                for s in batch:
                    s.error, s.done = errors.get(s.key), True
                self._busy = False
                self._cond.notify_all()
        if slot.error is not None:
            raise slot.error
