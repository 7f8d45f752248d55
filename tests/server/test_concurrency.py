"""Eight clients writing to one memory at once: merged searches, no errors, a consistent state."""

from __future__ import annotations

import threading

import numpy as np
from prometheus_client import REGISTRY

from raremem.client import MemoryClient
from tests.workloads import clustered_batches

THREADS, BATCHES, B, D, SIZE = 8, 40, 16, 32, 1024


def test_eight_writers(server):
    address, _ = server
    with MemoryClient(address) as admin:
        admin.create_memory("shared", D, SIZE, choose_k=32)
    written = [dict() for _ in range(THREADS)]  # slot -> labels this thread wrote there
    errors = []
    start = threading.Barrier(THREADS)

    def replica(r):
        try:
            with MemoryClient(address) as c:
                start.wait()
                for req in clustered_batches(100 + r, D, 400, B, BATCHES):
                    labels = req["labels"] + 1000 * r  # each replica has its own classes
                    res = c.lookup("shared", req["queries"], labels, update=True, use_recent=True,
                                   sources=req["sources"] + 10**6 * r)
                    for s, v in zip(res.written_slot.tolist(), labels.tolist()):
                        written[r].setdefault(s, set()).add(v)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=replica, args=(r,)) for r in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors

    with MemoryClient(address) as admin:
        stats = admin.stats("shared")
        slots = admin.read_slots("shared", start=0, stop=SIZE)
    assert stats.info.total_writes == THREADS * BATCHES * B
    assert stats.lookups == THREADS * BATCHES * B
    filled = slots["values"] >= 0
    assert filled.all()
    np.testing.assert_allclose(np.linalg.norm(slots["keys"], axis=1), 1.0, atol=1e-5)
    for s, v, src in zip(range(SIZE), slots["values"], slots["sources"]):
        owner = int(v) // 1000
        assert v in written[owner].get(s, set()), f"slot {s} holds {v}, never written there"
        assert src // 10**6 == owner, "provenance points at the replica that wrote the value"
    merged = (REGISTRY.get_sample_value("raremem_batch_requests_sum", {"memory": "shared"})
              / REGISTRY.get_sample_value("raremem_batch_requests_count", {"memory": "shared"}))
    print(f"\nrequests per merged search: {merged:.2f}; evictions {stats.evictions}; "
          f"writes overwritten before any read: {stats.unread_evictions}")
    assert merged > 1.0  # concurrent requests were merged into shared searches
