"""Fuzz a real raremem server with hypothesis-made messages for every unary rpc, plus random
bytes, and count what it answered: every status must be a clear one (never INTERNAL or
UNKNOWN), the server healthy afterwards and a memory no request names unchanged.
Writes results/fuzz.{json,md}.

    python -m bench.fuzz [--per-rpc 10000]      # from the repository root
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time

import grpc
import numpy as np
from hypothesis import HealthCheck, given, settings

from raremem.client import MemoryClient
from raremem.models.runinfo import machine, write_results
from tests.conftest import running_server
from tests.fuzzing import CLEAR, SERVICE, UNARY, message
from tests.workloads import clustered_batches


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--per-rpc", type=int, default=10_000, help="hypothesis examples per rpc")
    p.add_argument("--random-bytes", type=int, default=2_000, help="random-byte requests per rpc")
    a = p.parse_args()
    codes: dict[str, collections.Counter] = {}
    bad: list[str] = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, running_server(tmp) as (address, _), \
            MemoryClient(address, retry_seconds=0) as client:
        client.create_memory("sentinel", 8, 32, choose_k=4)
        client.create_memory("fuzz/m", 8, 32, choose_k=4)
        for req in clustered_batches(0, 8, 10, 4, 6):
            client.lookup("sentinel", req["queries"], req["labels"], update=True)
        sentinel = client.stats("sentinel", with_hash=True).state_hash
        rng = np.random.default_rng(0)
        for method in UNARY:
            seen = codes.setdefault(method.name, collections.Counter())
            typed = client.channel.unary_unary(f"/{SERVICE.full_name}/{method.name}",
                                               request_serializer=lambda m: m.SerializeToString(),
                                               response_deserializer=lambda b: b)
            raw = client.channel.unary_unary(f"/{SERVICE.full_name}/{method.name}")

            def answer(call, request):
                try:
                    call(request, timeout=10)
                    seen["OK"] += 1
                except grpc.RpcError as exc:
                    seen[exc.code().name] += 1
                    if exc.code() not in CLEAR:
                        bad.append(f"{method.name}: {exc.code().name}: {exc.details()}")

            @settings(max_examples=a.per_rpc, deadline=None, database=None, suppress_health_check=list(HealthCheck))
            @given(message(method.input_type))
            def one(request):
                if getattr(request, "name", None) == "sentinel":
                    request.name = "fuzz/m"
                answer(typed, request)

            one()
            for _ in range(a.random_bytes):
                answer(raw, rng.bytes(int(rng.integers(1, 300))))
            print(f"{method.name}: {dict(seen)}", flush=True)
        healthy = client.health() == "SERVING"
        unchanged = client.stats("sentinel", with_hash=True).state_hash == sentinel
    total = sum(sum(c.values()) for c in codes.values())
    out = {"machine": machine(), "command": "python -m bench.fuzz " + " ".join(sys.argv[1:]), "requests": total,
           "seconds": round(time.perf_counter() - t0, 1), "codes": {k: dict(v) for k, v in codes.items()},
           "unclear_statuses": bad, "healthy_after": healthy, "sentinel_unchanged": unchanged}
    m = out["machine"]
    names = sorted({c for v in codes.values() for c in v})
    md = ["# Fuzzing the servicer", "",
          f"`{out['command']}` at commit `{m['commit']}`, {m['time']}; {m['cpu']}, {m['cores']} cores. "
          f"{total:,} requests in {out['seconds']} s: hypothesis-made messages ({a.per_rpc:,} per rpc) and "
          f"random bytes ({a.random_bytes:,} per rpc) to a real server on loopback.", "",
          "| rpc | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    md += [f"| {k} | " + " | ".join(f"{v.get(c, 0):,}" for c in names) + " |" for k, v in codes.items()]
    md += ["", f"Statuses other than a clear refusal (INTERNAL, UNKNOWN, ...): **{len(bad)}**. Server healthy "
           f"afterwards: **{healthy}**. The memory no request named kept its state hash: **{unchanged}**.", ""]
    write_results("fuzz", out, md)
    return 0 if not bad and healthy and unchanged else 1


if __name__ == "__main__":
    sys.exit(main())
