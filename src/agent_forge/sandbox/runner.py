"""Run untrusted, machine-generated Python in a separate, limited process and talk to it over a narrow API.

    outcome = run_untrusted(source, "answer", ["2+2?"], host=host, host_methods={"generate"},
                            limits=SandboxLimits(cpu_seconds=2, wall_seconds=5))
    outcome.ok, outcome.value, outcome.error, outcome.host_calls

The parent never executes the source. It starts a fresh interpreter on `_child.py` (not a fork of this
torch-heavy process), sends it the job as one JSON line, answers its host API calls by calling
`host(method, args, kwargs)`, and kills the child's whole process group when the run ends, the wall time is
spent, or the child breaks the protocol. The parent loop uses non-blocking pipes and a selector, so a child that
stops reading, floods its pipe or never answers cannot stall the pipeline beyond `wall_seconds` (plus the time of
a host call already under way). Everything the source does ends as a `SandboxOutcome`; only misuse by the caller
(bad limits, non-JSON arguments, a host method name that is not an identifier) raises `ForgeError`.
"""

from __future__ import annotations

import json
import math
import os
import selectors
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from ..errors import ForgeError
from .isolation import child_argv, namespace_command, namespaces_available, read_roots

Host = Callable[[str, list, dict], Any]

FILE_BYTES = 8 << 20  # RLIMIT_FSIZE: the largest file a block may write in its temp dir
OPEN_FILES = 64  # RLIMIT_NOFILE
STDERR_CAP = 8192  # the child's stderr is kept (its tail) only to explain a crash
READ_CHUNK = 1 << 16


@dataclass(frozen=True)
class SandboxLimits:
    cpu_seconds: float = 10.0  # RLIMIT_CPU (SIGXCPU at the limit, SIGKILL one second later)
    memory_bytes: int = 1 << 30  # RLIMIT_AS of the child interpreter
    wall_seconds: float = 30.0  # whole run, host calls included; then the process group is killed
    max_message_bytes: int = 1 << 20  # one protocol line either way (the job, a call, a reply, the result)

    def check(self) -> None:
        for name in ("cpu_seconds", "wall_seconds"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ForgeError(f"sandbox limit {name} must be a positive number, not {value!r}")
        if not isinstance(self.memory_bytes, int) or self.memory_bytes < 64 << 20:
            raise ForgeError(f"sandbox limit memory_bytes must be an int of at least 64 MiB, not {self.memory_bytes!r}")
        if not isinstance(self.max_message_bytes, int) or self.max_message_bytes < 1024:
            raise ForgeError(f"sandbox limit max_message_bytes must be an int >= 1024, not {self.max_message_bytes!r}")


@dataclass
class SandboxOutcome:
    ok: bool
    value: Any  # the JSON value the entry function returned (None when not ok)
    error: str | None  # one line, e.g. "blocked: socket.__new__", "timeout after 30.0 s", "MemoryError"
    host_calls: int  # how many host API calls the code made
    wall_s: float


def one_line(text: str, limit: int = 300) -> str:
    return " ".join(str(text).split())[:limit]


def _check_call(entry: str, args: list, host: Host | None, host_methods: Collection[str],
                limits: SandboxLimits) -> list[str]:
    if not isinstance(entry, str) or not entry.isidentifier():
        raise ForgeError(f"sandbox entry must be a function name, not {entry!r}")
    if not isinstance(args, (list, tuple)):
        raise ForgeError("sandbox args must be a list")
    if not isinstance(limits, SandboxLimits):
        raise ForgeError("sandbox limits must be a SandboxLimits")
    limits.check()
    methods = sorted(set(host_methods))
    for name in methods:
        if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
            raise ForgeError(f"host method names must be public identifiers, not {name!r}")
    if methods and host is None:
        raise ForgeError("host_methods given without a host function")
    try:
        json.dumps(list(args), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ForgeError(f"sandbox args must be JSON values: {one_line(exc)}") from None
    return methods


def _exit_reason(returncode: int, stderr_tail: bytes) -> str:
    """Why a child that sent no result ended. The namespace preamble (`sh`) turns death by signal N into
    status 128 + N, so both forms are read."""
    signum = -returncode if returncode < 0 else returncode - 128 if returncode > 128 else 0
    if signum == signal.SIGXCPU:
        return "cpu limit"
    if signum == signal.SIGKILL:
        return "killed by SIGKILL (cpu limit, or out of memory)"
    if signum:
        try:
            return f"killed by {signal.Signals(signum).name}"
        except ValueError:
            return f"killed by signal {signum}"
    last = stderr_tail.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
    return one_line(f"exited with status {returncode} without a result {last[0]}".strip())


class _Session:
    """One child run: the selector loop over the child's pipes, host calls answered in order."""

    def __init__(self, proc: subprocess.Popen, host: Host | None, methods: list[str], limits: SandboxLimits):
        self.proc, self.host, self.methods, self.limits = proc, host, set(methods), limits
        self.deadline = time.monotonic() + limits.wall_seconds
        self.host_calls = 0
        self.inbox = b""
        self.outbox = b""
        self.stderr_tail = b""
        self.selector = selectors.DefaultSelector()
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            os.set_blocking(pipe.fileno(), False)
        self.selector.register(proc.stdout, selectors.EVENT_READ)
        self.selector.register(proc.stderr, selectors.EVENT_READ)
        self.writing = False

    def run(self, job_line: bytes) -> tuple[bool, Any, str | None]:
        self._queue(job_line)
        try:
            while True:
                timeout = self.deadline - time.monotonic()
                if timeout <= 0:
                    return False, None, f"timeout after {self.limits.wall_seconds:g} s"
                for key, events in self.selector.select(timeout):
                    outcome = self._handle(key.fileobj, events)
                    if outcome is not None:
                        return outcome
        finally:
            self.selector.close()

    def _queue(self, data: bytes) -> None:
        self.outbox += data
        if not self.writing and self.proc.stdin is not None:
            self.selector.register(self.proc.stdin, selectors.EVENT_WRITE)
            self.writing = True

    def _handle(self, pipe, events: int):
        if pipe is self.proc.stdin:
            return self._write()
        try:
            chunk = os.read(pipe.fileno(), READ_CHUNK)
        except BlockingIOError:
            return None
        if pipe is self.proc.stderr:
            if not chunk:
                self.selector.unregister(pipe)
            self.stderr_tail = (self.stderr_tail + chunk)[-STDERR_CAP:]
            return None
        if not chunk:
            return False, None, self._child_died()
        self.inbox += chunk
        return self._messages()

    def _write(self):
        try:
            written = os.write(self.proc.stdin.fileno(), self.outbox[:READ_CHUNK])
        except BlockingIOError:
            return
        except BrokenPipeError:  # the child is gone; its stdout EOF will say how
            written = len(self.outbox)
        self.outbox = self.outbox[written:]
        if not self.outbox:
            self.selector.unregister(self.proc.stdin)
            self.writing = False
        return

    def _messages(self):
        while b"\n" in self.inbox:
            line, self.inbox = self.inbox.split(b"\n", 1)
            if len(line) + 1 > self.limits.max_message_bytes:
                return False, None, f"message over the {self.limits.max_message_bytes}-byte limit"
            outcome = self._message(line)
            if outcome is not None:
                return outcome
        if len(self.inbox) > self.limits.max_message_bytes:
            return False, None, f"message over the {self.limits.max_message_bytes}-byte limit"
        return None

    def _message(self, line: bytes):
        try:
            message = json.loads(line)
        except ValueError:
            return False, None, "protocol: a line that is not JSON"
        if not isinstance(message, dict):
            return False, None, "protocol: a message that is not an object"
        if "result" in message:
            return True, message["result"], None
        if "error" in message:
            return False, None, one_line(message["error"]) or "error"
        if "call" in message:
            self._queue(self._answer(message))
            return None
        return False, None, "protocol: an unknown message"

    def _answer(self, message: dict) -> bytes:
        """The reply line to one host call; every failure is an error reply the child raises as HostError."""
        name, args, kwargs = message.get("call"), message.get("args"), message.get("kwargs")
        if name not in self.methods:
            reply = {"error": f"no host method {one_line(name, 60)!r}"}
        elif not isinstance(args, list) or not isinstance(kwargs, dict):
            reply = {"error": "malformed call"}
        else:
            self.host_calls += 1
            reply = self._call_host(name, args, kwargs)
        try:
            data = json.dumps(reply, allow_nan=False).encode()
        except (TypeError, ValueError):
            data = json.dumps({"error": f"host method {name} returned a value that is not JSON"}).encode()
        if len(data) + 1 > self.limits.max_message_bytes:
            data = json.dumps({"error": f"reply of {len(data)} bytes is over the "
                                        f"{self.limits.max_message_bytes}-byte limit"}).encode()
        return data + b"\n"

    def _call_host(self, name: str, args: list, kwargs: dict) -> dict:
        try:
            return {"value": self.host(name, args, kwargs)}
        except Exception as exc:  # the block may have passed bad arguments: its failure, not the pipeline's
            return {"error": one_line(f"{type(exc).__name__}: {exc}")}

    def _child_died(self) -> str:
        try:
            returncode = self.proc.wait(timeout=max(0.1, min(2.0, self.deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            return "the child closed its output without a result"
        self._drain_stderr()
        return _exit_reason(returncode, self.stderr_tail)

    def _drain_stderr(self) -> None:
        try:
            while chunk := os.read(self.proc.stderr.fileno(), READ_CHUNK):
                self.stderr_tail = (self.stderr_tail + chunk)[-STDERR_CAP:]
        except (BlockingIOError, OSError):
            pass


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the child is its session's (and group's) leader
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def _environment() -> dict[str, str]:
    return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8", "HOME": "/nonexistent"}


def run_untrusted(source: str, entry: str, args: list, *, host: Host | None = None,
                  host_methods: Collection[str] = (), limits: SandboxLimits = SandboxLimits(),
                  namespaces: bool | None = None) -> SandboxOutcome:
    """Run `entry(*args, agent)` from `source` in a sandboxed child; `agent.<m>(...)` calls `host(m, args,
    kwargs)` for m in `host_methods`. `namespaces`: None uses Linux namespaces when available, False never."""
    if not isinstance(source, str):
        raise ForgeError("sandbox source must be a str")
    methods = _check_call(entry, args, host, host_methods, limits)
    started = time.monotonic()
    use_namespaces = namespaces_available() if namespaces is None else bool(namespaces) and namespaces_available()
    with tempfile.TemporaryDirectory(prefix="forge-sandbox-", ignore_cleanup_errors=True) as tmp:
        tmpdir = os.path.realpath(tmp)
        # the mount preamble matches the temp dir against /proc/self/mounts, which escapes blanks and backslashes
        use_namespaces = use_namespaces and not any(c.isspace() or c == "\\" for c in tmpdir)
        job = {"source": source, "entry": entry, "args": list(args), "host_methods": methods, "tmpdir": tmpdir,
               "read_roots": read_roots(),
               "limits": {"cpu_seconds": limits.cpu_seconds, "memory_bytes": limits.memory_bytes,
                          "max_message_bytes": limits.max_message_bytes, "file_bytes": FILE_BYTES,
                          "open_files": OPEN_FILES}}
        job_line = json.dumps(job).encode() + b"\n"
        if len(job_line) > limits.max_message_bytes:
            return SandboxOutcome(False, None, f"source and arguments of {len(job_line)} bytes are over the "
                                               f"{limits.max_message_bytes}-byte limit", 0, 0.0)
        command = namespace_command(tmpdir, child_argv()) if use_namespaces else child_argv()
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                cwd=tmpdir, env=_environment(), start_new_session=True, close_fds=True)
        session = _Session(proc, host, methods, limits)
        try:
            ok, value, error = session.run(job_line)
        finally:
            _kill_group(proc)
    return SandboxOutcome(ok, value if ok else None, error, session.host_calls, time.monotonic() - started)
