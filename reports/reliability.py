"""results/reliability.md from what the reliability benchmarks wrote: the write-ahead log's
cost per fsync policy (bench/wal_cost.py), the fuzz counts (bench/fuzz.py) and the soak
(bench/soak.py, with its plot soak.png).

    python -m reports.reliability
"""

from __future__ import annotations

import json

from raremem.models.paths import results_dir


def machine_line(m: dict, cmd: str) -> str:
    return f"`{cmd}` at commit `{m['commit']}`, {m['time']}; {m['cpu']}, {m['cores']} cores."


def wal_section(w: dict) -> list[str]:
    out = ["## What the write-ahead log costs", "",
           machine_line(w["machine"], w["command"]) + f" Lookup with labels and update on a full memory "
           f"(N = {w['N']:,}, d = {w['d']}, k = {w['k']}: every update evicts), four servers that differ only in "
           "`--wal-fsync`, taking turns in blocks of calls; median ms per call.", "",
           "| b | no log (off) | none | interval (default) | always | none / off | interval / off | always / off |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in w["rows"]:
        ms, v = r["ms"], r["vs_off"]
        out.append(f"| {r['b']} | {ms['off']:.2f} | {ms['none']:.2f} | {ms['interval']:.2f} | {ms['always']:.2f} | "
                   f"{v['none']:.2f} | {v['interval']:.2f} | {v['always']:.2f} |")
    return out + [""]


def fuzz_section(f: dict) -> list[str]:
    counts = f["codes"]
    total = f["requests"]
    codes: dict[str, int] = {}
    for per in counts.values():
        for code, n in per.items():
            codes[code] = codes.get(code, 0) + n
    out = ["## Fuzzing", "", machine_line(f["machine"], f["command"]) + f" {total:,} requests in all "
           f"in {f['seconds']:.0f} s (hypothesis-made messages for every unary rpc and random bytes); the server "
           f"never crashed, statuses other than clear ones: {len(f['unclear_statuses'])}, healthy after: "
           f"{f['healthy_after']}, a memory no request named unchanged: {f['sentinel_unchanged']}. "
           "Truncated HTTP/2 frames at the port are in the suite (tests/server/test_fuzz.py).", "",
           "| status | count |", "|---|---:|"]
    out += [f"| {code} | {n:,} |" for code, n in sorted(codes.items(), key=lambda x: -x[1])]
    return out + ["", "Details per rpc: `fuzz.md`.", ""]


def soak_section(s: dict) -> list[str]:
    first, last = s["series"][0], s["series"][-1]
    worst99 = max(x["p99_ms"] for x in s["series"])
    return ["## Soak", "", machine_line(s["machine"], s["command"]) +
            f" {s['clients']} client processes for {s['minutes']:g} minutes against one server (loopback, "
            f"`--threads 1`, timed snapshots every 60 s), {s['memories']} full memories of {s['slots']:,} x "
            f"{s['d']}, b = {s['b']}; the mix " + ", ".join(f"{k} {v:.0%}" for k, v in s["mix"].items()) + ".", "",
            "| calls | errors | p50 first / last 10 s (ms) | p99 first / last 10 s (ms) | worst p99 of a window | "
            "RSS after warm-up | RSS last minute | growth | healthy after |",
            "|---:|---:|---|---|---:|---:|---:|---:|---|",
            f"| {s['total_calls']:,} | {s['error_count']} | {first['p50_ms']:.1f} / {last['p50_ms']:.1f} | "
            f"{first['p99_ms']:.1f} / {last['p99_ms']:.1f} | {worst99:.1f} | {s['rss_after_warmup_mb']:.0f} MiB | "
            f"{s['rss_last_minute_mb']:.0f} MiB | {100 * s['rss_growth']:+.1f}% | {s['health']} |", "",
            "Errors by kind: " + (", ".join(f"{k} {v}" for k, v in s["errors"].items()) or "none") + ".", "",
            "![soak](soak.png)", ""]


def main() -> int:
    res = results_dir()
    lines = ["# Reliability", "",
             "Tests in the suite: tests/server/test_wal.py (20 SIGKILLs at random points of a seeded update "
             "stream with `always`, the restarted memory equal to the reference replayed over exactly the "
             "acknowledged requests; `interval`'s unsynced tail bounded and reported; a retried update applied "
             "once; a full disk while snapshotting), tests/models/test_restart.py (a trainer across a server "
             "restart), tests/server/test_fuzz.py.", ""]
    for name, section in (("wal_cost.json", wal_section), ("fuzz.json", fuzz_section), ("soak.json", soak_section)):
        path = res / name
        if path.is_file():
            lines += section(json.loads(path.read_text()))
        else:
            lines += [f"({name} not measured yet: see its benchmark's docstring)", ""]
    (res / "reliability.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
