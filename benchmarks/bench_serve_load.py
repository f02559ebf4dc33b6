"""Load test of `agent-forge serve` on loopback: batched serving against one-request-at-a-time, side by side.

    python benchmarks/bench_serve_load.py [--clients 32] [--requests 20] [--max-tokens 32] [--agent PATH]

Starts the real server (`python -m agent_forge.cli serve ... --port 0 --threads 1`, a subprocess on 127.0.0.1)
twice on the same agent: with dynamic batching (`--max-batch 32`) and with `--max-batch 1` (one request
decoded at a time). Each time, `--clients` concurrent clients (the official `openai` async client) each send
`--requests` chat requests one after another (greedy, `max_tokens` fixed; different arithmetic prompts), and
the script reports errors, p50/p99 latency, requests/s and generated tokens/s, then the batched/sequential
throughput ratio and whether both servers gave identical answers. Bounded: every phase stops by itself
(`--timeout` seconds at most) and the servers are stopped at the end. `--repeat N` alternates N rounds of both
phases and reports the median ratio, for machines whose other load varies. The load generator shares the CPU
with the server, so by default it is a minimal keep-alive HTTP/1.1 client on asyncio streams (`--client httpx`
or `--client openai`, the official client, cost several times more CPU per request); each phase prints the CPU
time the server and the load generator used, and the server's mean batch size (from /metrics).

Without `--agent` it serves a tiny bundle built on the spot: the tiny profile's model shape (hidden 128,
4 layers, `TinyModelConfig()` defaults), untrained, so every answer runs to `max_tokens`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class PhaseResult:
    label: str
    max_batch: int
    wall_s: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    completion_tokens: int = 0
    answers: dict[tuple[int, int], str] = field(default_factory=dict)
    client_cpu_s: float = 0.0  # CPU time of this process (the load generator) during the phase
    server_cpu_s: float = 0.0  # CPU time of the server process during the phase
    engine: dict[str, float] = field(default_factory=dict)  # decode steps, rows, prefills (from /metrics)

    @property
    def requests(self) -> int:
        return len(self.latencies)

    def percentile(self, q: float) -> float:
        values = sorted(self.latencies)
        if not values:
            return float("nan")
        return values[min(len(values) - 1, max(0, round(q / 100 * len(values)) - 1))]

    @property
    def throughput(self) -> float:
        return self.requests / self.wall_s if self.wall_s else 0.0

    def line(self) -> str:
        return (f"{self.label:<22} max_batch={self.max_batch:<3} requests={self.requests:<5} errors={len(self.errors):<3} "
                f"wall={self.wall_s:7.2f}s  p50={self.percentile(50) * 1000:7.1f}ms  p99={self.percentile(99) * 1000:7.1f}ms  "
                f"{self.throughput:7.2f} req/s  {self.completion_tokens / max(self.wall_s, 1e-9):8.1f} tok/s  "
                f"cpu: server {self.server_cpu_s:.1f}s client {self.client_cpu_s:.1f}s  "
                f"mean batch {self.engine.get('rows', 0) / max(self.engine.get('steps', 0), 1):.1f} rows, "
                f"{self.engine.get('prefills', 0):.0f} prefills")


def build_bundle(folder: Path) -> Path:
    """The default tiny bundle: tiny-profile shape, untrained, task alphabet."""
    from agent_forge.config import TinyModelConfig
    from agent_forge.models import build_tiny_model, build_tiny_tokenizer, save_model
    from agent_forge.tasks import alphabet

    tokenizer = build_tiny_tokenizer(alphabet())
    save_model(build_tiny_model(tokenizer, TinyModelConfig(), seed=0), tokenizer, folder)
    return folder


class ServerProcess:
    """`agent-forge serve` in a subprocess on 127.0.0.1 with a free port; stopped (by its pid) on exit."""

    def __init__(self, agent: Path, max_batch: int, extra: list[str] | None = None, timeout: float = 120.0):
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        command = [sys.executable, "-m", "agent_forge.cli", "serve", str(agent), "--host", "127.0.0.1", "--port", "0",
                   "--max-batch", str(max_batch), "--threads", "1", "--log-level", "warning", "--model-name", "bench",
                   "--max-concurrent", "4096", "--no-canary", *(extra or [])]
        self.proc = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
        self.base = None
        lines = []
        deadline = time.monotonic() + timeout
        while self.base is None:
            line = self.proc.stderr.readline()
            if not line:
                raise RuntimeError("the server exited:\n" + "".join(lines))
            lines.append(line)
            match = re.search(r"on (http://[\d.]+:\d+)/v1", line)
            if match:
                self.base = match.group(1)
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the server did not start in time")
        while True:
            try:
                with urllib.request.urlopen(self.base + "/health", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError("the agent did not load in time")
            time.sleep(0.05)

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far (Linux /proc; 0 elsewhere)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return 0.0

    def engine_counters(self) -> dict[str, float]:
        """The batching engine's counters from /metrics: steps, rows (summed over steps), prefills."""
        with urllib.request.urlopen(self.base + "/metrics", timeout=10) as response:
            text = response.read().decode()
        found = re.findall(r"^agent_forge_(decode_steps|decode_rows|prefills)_total ([\d.e+]+)$", text, re.M)
        return {name.removeprefix("decode_"): float(value) for name, value in found}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def prompt_for(client: int, request: int) -> str:
    return f"{client * 37 + request * 11}+{request * 7 + 3} (digits reversed)"


class RawConnection:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams: the load generator shares the CPU with the
    server it measures, so it should cost as little as possible (httpx costs ~3 ms of CPU per request here)."""

    def __init__(self, base: str):
        host, port = base.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)
        self.reader = self.writer = None

    async def post_json(self, path: str, body: dict) -> tuple[int, dict]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        payload = json.dumps(body).encode()
        self.writer.write(f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
                          f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
        return status, json.loads(await self.reader.readexactly(length))

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def _drive(base: str, clients: int, requests: int, max_tokens: int, result: PhaseResult,
                 client_kind: str = "raw") -> None:
    import httpx
    import openai

    limits = httpx.Limits(max_connections=clients + 8, max_keepalive_connections=clients + 8)
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(600.0)) as http:
        client = openai.AsyncOpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, http_client=http)

        async def ask(prompt: str, raw: RawConnection) -> tuple[str, int]:
            body = {"model": "bench", "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
                    "temperature": 0}
            if client_kind == "raw":
                status, data = await raw.post_json("/v1/chat/completions", body)
                if status != 200:
                    raise RuntimeError(f"HTTP {status}: {str(data)[:200]}")
                return data["choices"][0]["message"]["content"] or "", data["usage"]["completion_tokens"]
            if client_kind == "openai":
                reply = await client.chat.completions.create(**body)
                return reply.choices[0].message.content or "", reply.usage.completion_tokens
            response = await http.post(base + "/v1/chat/completions", json=body)
            if response.status_code != 200:
                raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
            data = response.json()
            return data["choices"][0]["message"]["content"] or "", data["usage"]["completion_tokens"]

        async def one_client(c: int) -> None:
            raw = RawConnection(base)
            try:
                for r in range(requests):
                    start = time.perf_counter()
                    try:
                        text, tokens = await ask(prompt_for(c, r), raw)
                    except Exception as exc:  # every failure is counted and shown, none stops the run
                        result.errors.append(f"{type(exc).__name__}: {exc}")
                        await raw.close()
                        raw = RawConnection(base)
                        continue
                    result.latencies.append(time.perf_counter() - start)
                    result.completion_tokens += tokens
                    result.answers[(c, r)] = text
            finally:
                await raw.close()

        start = time.perf_counter()
        await asyncio.gather(*(one_client(c) for c in range(clients)))
        result.wall_s = time.perf_counter() - start


def run_phase(agent: Path, label: str, max_batch: int, clients: int, requests: int, max_tokens: int,
              timeout: float, client_kind: str = "raw") -> PhaseResult:
    result = PhaseResult(label, max_batch)
    import httpx  # noqa: F401 - imported before the CPU clock starts
    import openai  # noqa: F401

    with ServerProcess(agent, max_batch) as server:
        server_before, client_before = server.cpu_seconds(), time.process_time()
        try:
            asyncio.run(asyncio.wait_for(_drive(server.base, clients, requests, max_tokens, result, client_kind),
                                         timeout))
        except asyncio.TimeoutError:
            result.errors.append(f"phase stopped after {timeout:g} s")
            result.wall_s = result.wall_s or timeout
        result.server_cpu_s = server.cpu_seconds() - server_before
        result.client_cpu_s = time.process_time() - client_before
        result.engine = server.engine_counters()
    return result


def run_load(agent: Path, *, clients: int, requests: int, max_tokens: int, max_batch: int = 32,
             sequential: bool = True, timeout: float = 900.0, client_kind: str = "raw",
             ) -> tuple[PhaseResult, PhaseResult | None]:
    batched = run_phase(agent, "batched", max_batch, clients, requests, max_tokens, timeout, client_kind)
    one = (run_phase(agent, "one at a time", 1, clients, requests, max_tokens, timeout, client_kind)
           if sequential else None)
    return batched, one


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent", type=Path, default=None, help="agent folder or run directory (default: a tiny bundle)")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=20, help="requests per client, sent one after another")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds each phase may take at most")
    parser.add_argument("--no-sequential", action="store_true", help="skip the one-at-a-time comparison")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds of both phases, alternating (the machine's other load varies; median reported)")
    parser.add_argument("--client", choices=("raw", "httpx", "openai"), default="raw",
                        help="load generator: a minimal asyncio HTTP/1.1 client (default, cheapest), httpx, or the "
                             "official openai client")
    args = parser.parse_args()

    failed, ratios = False, []
    with tempfile.TemporaryDirectory() as tmp:
        agent = args.agent or build_bundle(Path(tmp) / "bundle")
        print(f"agent: {agent}; {args.clients} clients x {args.requests} requests, max_tokens {args.max_tokens}, "
              f"greedy; {args.client} clients; server: 1 torch thread; cpus: {os.cpu_count()}; load average before: "
              f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
        for round_ in range(args.repeat):
            if args.repeat > 1:
                print(f"round {round_ + 1}/{args.repeat}")
            batched, one = run_load(agent, clients=args.clients, requests=args.requests, max_tokens=args.max_tokens,
                                    max_batch=args.max_batch, sequential=not args.no_sequential,
                                    timeout=args.timeout, client_kind=args.client)
            for phase in (batched, one):
                if phase is None:
                    continue
                print(phase.line())
                for error in phase.errors[:5]:
                    print(f"  error: {error}")
                failed = failed or bool(phase.errors)
            if one is not None:
                same = sum(batched.answers.get(k) == v for k, v in one.answers.items())
                ratios.append(batched.throughput / max(one.throughput, 1e-9))
                print(f"batched / one-at-a-time throughput: {ratios[-1]:.2f}x; "
                      f"identical answers: {same}/{len(one.answers)}", flush=True)
    if len(ratios) > 1:
        print(f"ratio over {len(ratios)} rounds: median {statistics.median(ratios):.2f}x, "
              f"min {min(ratios):.2f}x, max {max(ratios):.2f}x")
    print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
