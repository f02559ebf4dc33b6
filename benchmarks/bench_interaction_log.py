"""What the interaction log costs a request: latency with logging on vs off, side by side, in one run.

    python benchmarks/bench_interaction_log.py [--requests 200] [--clients 1,16] [--max-tokens 4] [--repeat 3]
                                               [--sync full|normal] [--agent PATH]

Starts the real server (`python -m agent_forge.cli serve ... --threads 1 --no-canary`, a subprocess on
127.0.0.1) alternately without a log (`--no-log`) and with the default SQLite log (`--log-db`, WAL, group
commit, `synchronous=NORMAL`, the server's default; `--sync full` for an fsync per commit), `--repeat` rounds each, on the same agent (default: the
tiny-profile bundle of bench_serve_load.py, untrained, so every answer runs to `--max-tokens`). For each
concurrency in `--clients`, that many keep-alive clients send chat requests one after another (`--requests`
in all per phase), and the script prints the median and p99 client-side latency of both modes and their
difference; with logging on it also prints the server's own commit time per transaction and writes per
transaction (from /metrics: `agent_forge_log_commit_seconds`, `agent_forge_log_writes_total`). A response's
row is committed before its body is sent, so the difference of the medians is the cost the issue bounds
(at most 5 ms at the median).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serve_load import RawConnection, ServerProcess, build_bundle  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


async def drive(base: str, clients: int, total: int, max_tokens: int) -> list[float]:
    latencies: list[float] = []
    per_client = max(1, total // clients)

    async def one(k: int) -> None:
        raw = RawConnection(base)
        try:
            for i in range(per_client):
                body = {"model": "bench", "messages": [{"role": "user", "content": f"{k * 37 + i}+{i + 3}"}],
                        "max_tokens": max_tokens, "temperature": 0}
                start = time.perf_counter()
                status, data = await raw.post_json("/v1/chat/completions", body)
                latencies.append(time.perf_counter() - start)
                if status != 200:
                    raise RuntimeError(f"HTTP {status}: {str(data)[:200]}")
        finally:
            await raw.close()

    await asyncio.gather(*(one(k) for k in range(clients)))
    return latencies


def commit_stats(base: str) -> tuple[float, float, float]:
    """(transactions, summed commit seconds, writes) from the server's /metrics."""
    with urllib.request.urlopen(base + "/metrics", timeout=10) as response:
        text = response.read().decode()

    def value(name: str) -> float:
        found = re.search(rf"^{name} ([\d.e+-]+)$", text, re.M)
        return float(found.group(1)) if found else 0.0

    return (value("agent_forge_log_commit_seconds_count"), value("agent_forge_log_commit_seconds_sum"),
            value("agent_forge_log_writes_total"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="requests per phase")
    parser.add_argument("--clients", default="1,16", help="comma-separated concurrencies")
    parser.add_argument("--max-tokens", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3, help="rounds of off/on, alternating")
    parser.add_argument("--sync", choices=("full", "normal"), default="normal")
    parser.add_argument("--agent", type=Path, default=None)
    args = parser.parse_args()
    concurrencies = [int(c) for c in args.clients.split(",")]

    with tempfile.TemporaryDirectory(prefix="bench-log-") as tmp:
        agent = args.agent or build_bundle(Path(tmp) / "agent")
        results = {(mode, c): [] for mode in ("off", "on") for c in concurrencies}
        commits = {c: [0.0, 0.0, 0.0] for c in concurrencies}
        for round_ in range(args.repeat):
            for mode in ("off", "on"):
                extra = (["--no-log"] if mode == "off" else
                                           ["--log-db", str(Path(tmp) / f"log-{round_}.sqlite"), "--log-sync", args.sync])
                with ServerProcess(agent, max_batch=32, extra=extra) as server:
                    asyncio.run(drive(server.base, 1, 20, args.max_tokens))  # warm-up, not measured
                    for c in concurrencies:
                        before = commit_stats(server.base) if mode == "on" else None
                        results[(mode, c)] += asyncio.run(drive(server.base, c, args.requests, args.max_tokens))
                        if before is not None:
                            after = commit_stats(server.base)
                            for i in range(3):
                                commits[c][i] += after[i] - before[i]
                print(f"round {round_ + 1}/{args.repeat}: logging {mode} done", file=sys.stderr)

    print(f"\ninteraction log cost: chat requests, max_tokens={args.max_tokens}, SQLite synchronous="
          f"{args.sync.upper()}, {args.repeat} alternating rounds, latency measured by the client\n")
    print(f"{'clients':>7}  {'requests':>8}  {'median off':>10}  {'median on':>10}  {'median +':>9}  "
          f"{'p99 off':>9}  {'p99 on':>9}  {'p99 +':>8}  {'commit/txn':>10}  {'writes/txn':>10}")
    for c in concurrencies:
        off, on = results[("off", c)], results[("on", c)]
        m_off, m_on = statistics.median(off) * 1000, statistics.median(on) * 1000
        p_off, p_on = percentile(off, 99) * 1000, percentile(on, 99) * 1000
        txns, seconds, writes = commits[c]
        print(f"{c:>7}  {len(on):>8}  {m_off:>8.2f}ms  {m_on:>8.2f}ms  {m_on - m_off:>+7.2f}ms  {p_off:>7.2f}ms  "
              f"{p_on:>7.2f}ms  {p_on - p_off:>+6.2f}ms  {seconds / max(txns, 1) * 1000:>8.3f}ms  "
              f"{writes / max(txns, 1):>10.2f}")


if __name__ == "__main__":
    main()
