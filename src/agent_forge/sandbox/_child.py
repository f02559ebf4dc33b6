"""The sandbox's child process: runs one block of untrusted source and reports its result as one JSON line.

Started by `agent_forge.sandbox.runner` as `python -I -S -B _child.py` (a fresh interpreter, never a fork of the
pipeline), with its working directory set to a fresh temp dir. It imports only the standard library and is never
imported by the package. Protocol (newline-delimited JSON on the process's original stdin/stdout; fds 0, 1 and 2
are then pointed at /dev/null so that `print` or `os.write(1, ...)` in the block cannot reach the parent):

    parent -> child  {"source", "entry", "args", "host_methods", "limits", "tmpdir", "read_roots"}   (once)
    child  -> parent {"call": name, "args": [...], "kwargs": {...}}    a host API call; the parent answers
    parent -> child  {"value": ...} | {"error": "..."}
    child  -> parent {"result": value} | {"error": "..."}               last line; then the child exits

Order matters: the job is read and compiled, resource limits set, unaudited escape hatches removed from `posix`,
and only then the audit hook installed (hooks cannot be removed) and the block executed.
"""

import json
import os
import signal
import sys
import threading

# modules a block may not import (nor load by `_imp.create_dynamic`, which raises the same "import" event):
# foreign-function interfaces, processes, sockets, shared memory, raw terminals, the rlimit setter, test modules
# that can corrupt memory, and network clients that would only fail later
DENIED_IMPORTS = frozenset({
    "ctypes", "_ctypes", "_ctypes_test", "cffi", "_cffi_backend", "subprocess", "_posixsubprocess",
    "multiprocessing", "_multiprocessing", "_posixshmem", "concurrent", "socket", "_socket", "ssl", "_ssl",
    "asyncio", "selectors", "mmap", "pty", "tty", "fcntl", "termios", "resource", "_xxsubinterpreters",
    "_xxinterpchannels", "_testcapi", "_testinternalcapi", "_testbuffer", "_testmultiphase", "_testclinic",
    "_testimportmultiple", "_tkinter", "tkinter", "readline", "_curses", "curses", "nis", "spwd", "syslog",
    "ossaudiodev", "http.client", "http.server", "urllib.request", "ftplib", "smtplib", "poplib", "imaplib", "telnetlib", "xmlrpc",
    "webbrowser", "socketserver", "faulthandler", "sqlite3", "_sqlite3", "posix", "_imp",
})

# audit events refused outright: processes, signals to others, sockets, FFI, new code objects from bytes,
# tracing/profiling and hook escapes, heap walking, links (which could point out of the temp dir)
DENIED_EVENTS = frozenset({
    "os.fork", "os.forkpty", "os.posix_spawn", "os.spawn", "os.exec", "os.system", "os.kill", "os.killpg",
    "os.startfile", "os.putenv", "os.unsetenv", "os.chdir", "os.link", "os.symlink", "os.lockf",
    "subprocess.Popen", "pty.spawn", "signal.pthread_kill", "sys.addaudithook", "sys.settrace", "sys.setprofile",
    "sys._current_frames", "sys._current_exceptions", "sys.setrecursionlimit", "gc.get_objects",
    "gc.get_referrers", "gc.get_referents", "code.__new__", "function.__new__", "marshal.load", "marshal.loads",
    "mmap.__new__", "webbrowser.open", "setopencookie", "cpython.run_command", "cpython.run_file",
})
DENIED_PREFIXES = ("socket.", "ctypes.", "_ctypes.", "winreg.", "msvcrt.", "_winapi.", "sqlite3.")

# path events that modify the file system: every path argument must lie inside the temp dir, no dir_fd
WRITE_EVENTS = {  # event -> positions of path arguments
    "os.remove": (0,), "os.rmdir": (0,), "os.mkdir": (0,), "os.rename": (0, 1), "os.chmod": (0,),
    "os.chown": (0,), "os.truncate": (0,), "os.utime": (0,), "os.setxattr": (0,), "os.removexattr": (0,),
    "os.chflags": (0,), "shutil.rmtree": (0,),
}
DIR_FD_POSITIONS = {"os.remove": (1,), "os.rmdir": (1,), "os.mkdir": (2,), "os.rename": (2, 3), "os.chmod": (2,),
                    "os.chown": (3,), "os.utime": (3,)}
# path events that only read: inside the temp dir or the interpreter's standard library
READ_EVENTS = {"os.listdir": (0,), "os.scandir": (0,), "os.getxattr": (0,), "os.listxattr": (0,)}

# posix functions that raise no audit event but would let a block leave its process group, change identity or
# make files (a FIFO or device node) outside the temp dir; they are deleted before the block runs
UNAUDITED_POSIX = (
    "setsid", "setpgid", "setpgrp", "setuid", "setgid", "seteuid", "setegid", "setreuid", "setregid",
    "setresuid", "setresgid", "setgroups", "initgroups", "mknod", "mkfifo", "chroot", "fchdir", "fchmod",
    "fchown", "ftruncate", "posix_fallocate", "sched_setaffinity", "sched_setscheduler", "sched_setparam",
    "setpriority", "nice", "pidfd_open", "memfd_create", "eventfd", "openpty", "login_tty",
    "tcsetpgrp", "plock", "setns", "unshare",
)

MAX_WRITE_EVENTS = 128  # with RLIMIT_FSIZE (8 MiB): at most 1 GiB of files, removed after the run


class SandboxViolation(PermissionError):
    """An action the sandbox refuses; a `PermissionError`, so library code that tolerates OSError goes on."""


class HostError(RuntimeError):
    """A host API call failed in the parent (bad arguments, the host raised, a reply over the size limit)."""


def one_line(exc: BaseException) -> str:
    if isinstance(exc, SandboxViolation):
        text = str(exc)
    else:
        detail = str(exc)
        text = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    return " ".join(text.split())[:300]


class Channel:
    """The protocol pipes; one host call at a time (a lock, in case the block starts threads)."""

    def __init__(self, reader, out_fd: int, max_bytes: int):
        self.reader = reader
        self.out_fd = out_fd
        self.max_bytes = max_bytes
        self.lock = threading.Lock()

    def send(self, message: dict) -> None:
        self.write(json.dumps(message, allow_nan=False).encode() + b"\n")

    def write(self, data: bytes) -> None:
        while data:
            data = data[os.write(self.out_fd, data):]

    def receive(self) -> dict:
        line = self.reader.readline(self.max_bytes + 2)
        if not line.endswith(b"\n"):
            raise HostError("the host closed the channel or sent an over-long line")
        return json.loads(line)

    def call(self, name: str, args: tuple, kwargs: dict):
        """Forward `agent.<name>(*args, **kwargs)`; the reply's value, or HostError. Oversized calls never leave."""
        try:
            data = json.dumps({"call": name, "args": list(args), "kwargs": kwargs}, allow_nan=False).encode()
        except (TypeError, ValueError) as exc:
            raise HostError(f"agent.{name} arguments are not JSON: {exc}") from None
        if len(data) + 1 > self.max_bytes:
            raise HostError(f"agent.{name} message of {len(data)} bytes is over the {self.max_bytes}-byte limit")
        with self.lock:
            self.write(data + b"\n")
            reply = self.receive()
        if "error" in reply:
            raise HostError(f"agent.{name}: {reply['error']}")
        return reply.get("value")


def make_agent(channel: Channel, methods: frozenset):
    """The narrow API object: `agent.<method>(...)` for the allowed methods only, forwarded to the parent."""

    class Agent:
        __slots__ = ()

        def __getattr__(self, name: str):
            if name not in methods:
                raise AttributeError(f"agent has no method {name!r}")
            return lambda *args, **kwargs: channel.call(name, args, kwargs)

        def __dir__(self):
            return sorted(methods)

        def __repr__(self):
            return f"<agent: {', '.join(sorted(methods))}>"

    return Agent()


def apply_limits(limits: dict) -> None:
    """rlimits on this process; `resource` is dropped from sys.modules afterwards and is a denied import."""
    import resource

    cpu = max(1, int(-(-limits["cpu_seconds"] // 1)))
    settings = {
        resource.RLIMIT_CPU: (cpu, cpu + 1),  # SIGXCPU at the soft limit, SIGKILL a second later
        resource.RLIMIT_AS: (limits["memory_bytes"], limits["memory_bytes"]),
        resource.RLIMIT_NPROC: (0, 0),  # binds for non-root users only; the audit hook refuses fork for root
        resource.RLIMIT_FSIZE: (limits["file_bytes"], limits["file_bytes"]),
        resource.RLIMIT_NOFILE: (limits["open_files"], limits["open_files"]),
        resource.RLIMIT_CORE: (0, 0),
    }
    for which, value in settings.items():
        resource.setrlimit(which, value)
    del sys.modules["resource"]


def remove_unaudited() -> None:
    """Delete the posix functions above, then `_imp.create_builtin` (which raises no audit event and would hand
    out a fresh `posix` with them back), after loading the remaining allowed built-in modules while it exists."""
    import _imp
    import importlib
    import posix

    for name in UNAUDITED_POSIX:
        for module in (os, posix):
            module.__dict__.pop(name, None)
    for name in sys.builtin_module_names:
        if name not in sys.modules and name not in DENIED_IMPORTS and not name.startswith("xx"):
            importlib.import_module(name)
    del _imp.create_builtin


def make_hook(tmpdir: str, read_roots: tuple):
    """The audit hook. It only uses names bound here (builtins and C functions), so a block that monkeypatches
    `os.path` or `builtins` cannot change what it checks."""
    _isinstance, _type, _str, _bytes, _int, _len = isinstance, type, str, bytes, int, len
    _frozenset_contains = DENIED_EVENTS.__contains__
    denied_imports, write_events, read_events, dir_fds = DENIED_IMPORTS, dict(WRITE_EVENTS), dict(READ_EVENTS), \
        dict(DIR_FD_POSITIONS)
    prefixes, violation = DENIED_PREFIXES, SandboxViolation
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    read_only_roots = tuple(read_roots) + ("/dev/null", "/dev/urandom")
    # RLIMIT_FSIZE caps one file; this caps how many write-opens (and mkdirs) a block may make in its temp dir,
    # so that without a tmpfs it cannot fill the disk with many capped files
    write_budget = [MAX_WRITE_EVENTS]

    def spend_write(what):
        write_budget[0] -= 1
        if write_budget[0] < 0:
            raise violation(f"blocked: {what} beyond {MAX_WRITE_EVENTS} write events")

    def absolute(path):
        """A lexically normalised absolute path (cwd is the temp dir, and chdir is refused); None for an fd.
        Only exact str and bytes are taken: the event carries the caller's object, and a path-like object or a
        str subclass could show the hook another path than the one the call used."""
        if path is None:
            return tmpdir
        if _type(path) is _int:
            return None
        if _type(path) is not _str and _type(path) is not _bytes:
            raise violation("blocked: a path that is not a plain str or bytes")
        if _type(path) is _bytes:
            path = path.decode("utf-8", "surrogateescape")
        if not path.startswith("/"):
            path = tmpdir + "/" + path
        parts = []
        for part in path.split("/"):
            if part == "..":
                if parts:
                    parts.pop()
            elif part and part != ".":
                parts.append(part)
        return "/" + "/".join(parts)

    def inside(path, roots) -> bool:
        for root in roots:
            if path == root or path.startswith(root + "/"):
                return True
        return False

    def check_open(args) -> None:
        path, mode, flags = args[0], args[1], args[2]
        if _type(path) is _int:  # an already open descriptor (os.fdopen, open(fd))
            return
        writing = (_isinstance(mode, _str) and ("w" in mode or "a" in mode or "x" in mode or "+" in mode)) or (
            _isinstance(flags, _int) and flags & write_flags)
        target = absolute(path)
        if mode is None and path[:1] not in ("/", b"/"):
            # os.open with a relative path: its dir_fd is not in the event, so it could point anywhere
            raise violation("blocked: os.open with a relative path")
        if inside(target, (tmpdir,)):
            if writing:
                spend_write("open")
            return
        if writing:
            raise violation(f"blocked: open {target} for writing")
        if not inside(target, read_only_roots):
            raise violation(f"blocked: open {target}")

    def hook(event, args):
        if _frozenset_contains(event) or event.startswith(prefixes):
            raise violation(f"blocked: {event}")
        if event == "import":
            name = args[0]
            if _type(name) is not _str or name in denied_imports or name.partition(".")[0] in denied_imports:
                raise violation(f"blocked: import {name}")
        elif event == "open":
            check_open(args)
        elif event in write_events or event in read_events:
            writing = event in write_events
            for position in dir_fds.get(event, ()):
                if _len(args) > position and args[position] not in (None, -1):
                    raise violation(f"blocked: {event} with dir_fd")
            for position in (write_events if writing else read_events)[event]:
                target = absolute(args[position])
                if target is None:
                    raise violation(f"blocked: {event} on a file descriptor")
                roots = (tmpdir,) if writing else (tmpdir,) + read_only_roots
                if not inside(target, roots):
                    raise violation(f"blocked: {event} {target}")
            if event == "os.mkdir":
                spend_write(event)

    return hook


def source_imports_only() -> None:
    """Imports compile .py sources from now on: with no cache tag, importlib never reads .pyc files, so the
    hook can refuse `marshal.loads` (hand-made code objects can crash the interpreter) without breaking imports."""
    sys.implementation.cache_tag = None
    sys.dont_write_bytecode = True


def silence_output() -> None:
    """Point fds 0-2 and sys.std* at /dev/null: the block's output never reaches the protocol pipes."""
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    sys.stdin = open(os.devnull)
    sys.stdout = sys.stderr = open(os.devnull, "w")


def on_cpu_limit(channel: Channel):
    def handler(signum, frame):
        channel.send({"error": "cpu limit"})
        os._exit(3)

    return handler


def run_block(job: dict, channel: Channel, code) -> dict:
    namespace = {"__name__": "agent_block", "__builtins__": __builtins__}
    exec(code, namespace)
    entry = namespace.get(job["entry"])
    if not callable(entry):
        return {"error": f"the source defines no function named {job['entry']}"}
    agent = make_agent(channel, frozenset(job["host_methods"]))
    value = entry(*job["args"], agent)
    try:
        data = json.dumps({"result": value}, allow_nan=False)
    except (TypeError, ValueError) as exc:
        return {"error": f"the result is not JSON: {one_line(exc)}"}
    if len(data) + 1 > channel.max_bytes:
        return {"error": f"the result of {len(data)} bytes is over the {channel.max_bytes}-byte limit"}
    return {"result": value}


def main() -> None:
    reader, out_fd = os.fdopen(os.dup(0), "rb"), os.dup(1)
    job = json.loads(reader.readline())
    channel = Channel(reader, out_fd, job["limits"]["max_message_bytes"])
    try:
        code = compile(job["source"], "<agent block>", "exec")
    except (SyntaxError, ValueError) as exc:
        channel.send({"error": f"syntax error: {one_line(exc)}"})
        os._exit(0)
    os.chdir(job["tmpdir"])
    apply_limits(job["limits"])
    remove_unaudited()
    signal.signal(signal.SIGXCPU, on_cpu_limit(channel))
    silence_output()
    source_imports_only()
    sys.addaudithook(make_hook(job["tmpdir"], tuple(job["read_roots"])))
    try:
        message = run_block(job, channel, code)
    except MemoryError:
        message = {"error": "MemoryError"}
    except BaseException as exc:  # SystemExit and KeyboardInterrupt from the block are failures too
        message = {"error": one_line(exc)}
    channel.send(message)
    os._exit(0)  # no interpreter shutdown: threads the block started die with the process


if __name__ == "__main__":
    main()
