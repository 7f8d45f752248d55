"""Micro-batching: concurrent lookups on one memory become one search.

FAISS searches from several threads at once collapse (design.md §5), so each memory has one
worker thread. Request threads enqueue a validated ``LookupSpec`` and wait; the worker takes
everything queued (up to the row limits), runs it as one ``lookup_many`` and hands each
request its own result. Under load batches grow on their own; alone, a request waits only for
the thread hand-off.

Every search of a memory runs on that one thread on purpose: OpenMP keeps a thread team per
calling thread, so searching from whichever gRPC thread took the request wakes a cold team
each time. Tried here: running idle requests in the calling thread made a remote b=16 lookup
at N=65536 40% slower than the hand-off does.
"""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import Future
from typing import Callable

from raremem.server.errors import Aborted
from raremem.server.store import LookupResult, LookupSpec


class Batcher:
    def __init__(self, name: str, run: Callable[[list[LookupSpec]], list[LookupResult]],
                 max_rows: int, max_update_rows: int):
        self._run = run
        self._max_rows = max_rows                # queries per merged search
        self._max_update_rows = max_update_rows  # updating queries per call (the memory size)
        self._queue: deque[tuple[LookupSpec, Future]] = deque()
        self._cv = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=f"batcher:{name}", daemon=True)
        self._thread.start()

    def submit(self, spec: LookupSpec) -> LookupResult:
        future: Future = Future()
        with self._cv:
            if self._closed:
                raise Aborted("the memory was deleted or replaced while this request waited")
            self._queue.append((spec, future))
            self._cv.notify()
        return future.result()

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join()

    def _take(self) -> list[tuple[LookupSpec, Future]]:
        """Pop queued requests while they fit the limits (always at least one)."""
        taken, rows, update_rows = [], 0, 0
        while self._queue:
            spec, _ = self._queue[0]
            b = len(spec.queries)
            u = b if spec.update else 0
            if taken and (rows + b > self._max_rows or update_rows + u > self._max_update_rows):
                break
            taken.append(self._queue.popleft())
            rows, update_rows = rows + b, update_rows + u
        return taken

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._closed:
                    self._cv.wait()
                if not self._queue:
                    return
                batch = self._take()
            try:
                results = self._run([spec for spec, _ in batch])
            except Exception as exc:  # noqa: BLE001 - handed to every waiting request
                for _, future in batch:
                    future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results):
                future.set_result(result)
