"""The sandbox against hostile generated code: real child processes, real sockets and files, no mocks.

Each hostile block runs under both isolations this machine offers (Linux namespaces when `unshare` works, and the
plain-process fallback, where the audit hook alone guards files and network), and after each one a benign block
still runs in the same test process: the search goes on.
"""

import os
import socket
import time

import pytest

from agent_forge.errors import ForgeError
from agent_forge.sandbox import (
    SandboxLimits,
    check_source,
    isolation_description,
    namespaces_available,
    run_untrusted,
)

LIMITS = SandboxLimits(cpu_seconds=1, memory_bytes=256 << 20, wall_seconds=5)

BENIGN = '''
import json, math, re, collections

def answer(prompt, agent):
    first = agent.generate(prompt, temperature=0.0)
    second = agent.generate(first + "?", max_new_tokens=8)
    print("this goes nowhere")
    return {"answer": second, "root": math.sqrt(16), "words": len(re.findall(r"\\w+", prompt))}
'''


def upper_host(method, args, kwargs):
    """A tiny pure-Python host: `generate` upper-cases its prompt."""
    if method == "generate":
        return str(args[0]).upper()
    raise ValueError(f"unknown method {method}")


@pytest.fixture(params=["namespaces", "process"])
def namespaces(request):
    if request.param == "namespaces" and not namespaces_available():
        pytest.skip("unshare with net/pid/mount namespaces is not available here")
    return request.param == "namespaces"


def run(source, namespaces, *, limits=LIMITS, args=("hello world",), host=upper_host, methods=("generate",)):
    return run_untrusted(source, "answer", list(args), host=host, host_methods=methods, limits=limits,
                         namespaces=namespaces)


def assert_search_goes_on(namespaces):
    outcome = run(BENIGN, namespaces)
    assert outcome.ok, outcome.error
    assert outcome.value == {"answer": "HELLO WORLD?", "root": 4.0, "words": 2}
    assert outcome.host_calls == 2


def test_benign_block_calls_the_host_and_returns_a_value(namespaces):
    assert_search_goes_on(namespaces)


def test_writes_outside_the_temp_dir_all_fail(namespaces, tmp_path):
    target = tmp_path / "escaped.txt"
    source = f'''
import os, shutil, pathlib

TARGET = {str(target)!r}

def attempt(action):
    try:
        action()
        return "done"
    except Exception as exc:
        return type(exc).__name__ + ": " + str(exc)

def answer(prompt, agent):
    open("inside.txt", "w").write("mine")
    return [
        attempt(lambda: open(TARGET, "w").write("x")),
        attempt(lambda: os.close(os.open(TARGET, os.O_WRONLY | os.O_CREAT))),
        attempt(lambda: pathlib.Path(TARGET).write_text("x")),
        attempt(lambda: os.rename("inside.txt", TARGET)),
        attempt(lambda: shutil.copy("inside.txt", TARGET)),
        attempt(lambda: os.symlink("inside.txt", "link")),
        attempt(lambda: open("../" + os.path.basename(TARGET), "w")),
        attempt(lambda: os.mkfifo(TARGET)),
        open("inside.txt").read(),
    ]
'''
    outcome = run(source, namespaces)
    assert outcome.ok, outcome.error
    *attempts, own_file = outcome.value
    assert own_file == "mine"  # the temp dir itself is writable
    assert all(result != "done" for result in attempts), attempts
    assert "blocked: open" in attempts[0]
    assert not target.exists()
    assert os.listdir(tmp_path) == []
    assert_search_goes_on(namespaces)


def test_reads_outside_the_temp_dir_and_stdlib_fail(namespaces):
    source = 'def answer(prompt, agent):\n    return open("/etc/passwd").read()\n'
    outcome = run(source, namespaces)
    assert not outcome.ok and outcome.error == "blocked: open /etc/passwd"
    assert_search_goes_on(namespaces)


def test_socket_to_a_loopback_listener_never_connects(namespaces):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        source = f'''
import importlib

def answer(prompt, agent):
    failures = []
    for name in ("socket", "_socket", "asyncio", "urllib.request"):
        try:
            module = importlib.import_module(name)
            failures.append(name + " imported")
        except Exception as exc:
            failures.append(str(exc))
    import socket
    socket.create_connection(("127.0.0.1", {port}), timeout=1)
    return failures
'''
        outcome = run(source, namespaces)
        listener.settimeout(0.3)
        with pytest.raises(socket.timeout):
            listener.accept()
    assert not outcome.ok and outcome.error == "blocked: import socket"
    assert_search_goes_on(namespaces)


def test_fork_loop_is_refused(namespaces):
    source = 'import os\ndef answer(prompt, agent):\n    while True:\n        os.fork()\n'
    outcome = run(source, namespaces)
    assert not outcome.ok and outcome.error == "blocked: os.fork"
    assert_search_goes_on(namespaces)


def test_ten_gib_allocation_fails_with_memory_error(namespaces):
    source = 'def answer(prompt, agent):\n    block = bytearray(10 << 30)\n    return len(block)\n'
    outcome = run(source, namespaces)
    assert not outcome.ok and outcome.error == "MemoryError"
    assert_search_goes_on(namespaces)


def test_endless_loop_ends_by_cpu_limit(namespaces):
    started = time.monotonic()
    outcome = run("def answer(prompt, agent):\n    while True:\n        pass\n", namespaces)
    assert not outcome.ok and outcome.error == "cpu limit"
    assert time.monotonic() - started < LIMITS.cpu_seconds + 2.5
    assert_search_goes_on(namespaces)


def test_sleeping_block_ends_by_wall_timeout(namespaces):
    limits = SandboxLimits(cpu_seconds=1, memory_bytes=256 << 20, wall_seconds=1.5)
    outcome = run("import time\ndef answer(prompt, agent):\n    time.sleep(60)\n", namespaces, limits=limits)
    assert not outcome.ok and outcome.error == "timeout after 1.5 s"
    assert outcome.wall_s < 3.0
    assert_search_goes_on(namespaces)


def test_ctypes_cannot_be_imported_or_loaded(namespaces):
    outcome = run("import ctypes\ndef answer(prompt, agent):\n    return 1\n", namespaces)
    assert not outcome.ok and outcome.error == "blocked: import ctypes"
    # loading the extension module by hand raises the same audit event
    source = '''
import _imp, glob, importlib.machinery, sysconfig
def answer(prompt, agent):
    folder = sysconfig.get_paths()["platstdlib"] + "/lib-dynload"
    path = (glob.glob(folder + "/_ctypes.*.so") or [folder + "/_ctypes.so"])[0]
    return str(_imp.create_dynamic(importlib.machinery.ModuleSpec("_ctypes", None, origin=path)))
'''
    outcome = run(source, namespaces)
    assert not outcome.ok and outcome.error == "blocked: import _ctypes"
    assert_search_goes_on(namespaces)


def test_escape_attempts_are_refused(namespaces, tmp_path):
    target = tmp_path / "escaped.txt"
    source = f'''
import gc, importlib, os, sys

def attempt(action):
    try:
        action()
        return "done"
    except Exception as exc:
        return str(exc)

calls = []

def answer(prompt, agent):
    results = {{
        "addaudithook": attempt(lambda: sys.addaudithook(lambda event, args: calls.append(event))),
        "settrace": attempt(lambda: sys.settrace(lambda *a: None)),
        "setprofile": attempt(lambda: sys.setprofile(lambda *a: None)),
        "gc": attempt(lambda: gc.get_objects()),
        "system": attempt(lambda: os.system("touch {target}")),
        "spawn": attempt(lambda: os.posix_spawn("/bin/touch", ["touch", "{target}"], {{}})),
        "subprocess": attempt(lambda: importlib.import_module("subprocess")),
        "kill": attempt(lambda: os.kill(1, 9)),
        "builtin": attempt(lambda: __import__("_imp").create_builtin(None)),
        "setsid": attempt(lambda: os.setsid()),
    }}
    open("probe.txt", "w").close()
    results["new hook saw events"] = bool(calls)  # the added hook was never installed
    results["write after"] = attempt(lambda: open("{target}", "w"))
    return results
'''
    outcome = run(source, namespaces)
    assert outcome.ok, outcome.error
    results = outcome.value
    assert results.pop("new hook saw events") is False
    assert results.pop("addaudithook") == "done"  # CPython ignores the refusal but does not add the hook
    assert all(value.startswith("blocked") or "has no attribute" in value for value in results.values()), results
    assert results["system"] == "blocked: os.system"
    assert not target.exists()
    assert_search_goes_on(namespaces)


def test_host_method_outside_the_allow_list_fails_in_the_child(namespaces):
    source = '''
def answer(prompt, agent):
    try:
        agent.search_memory("x")
    except AttributeError as exc:
        refused = str(exc)
    return [refused, dir(agent), agent.generate(prompt)]
'''
    outcome = run(source, namespaces)
    assert outcome.ok, outcome.error
    assert outcome.value == ["agent has no method 'search_memory'", ["generate"], "HELLO WORLD"]
    assert outcome.host_calls == 1
    # a forged call line for a method not allowed is refused by the parent too
    forged = '''
import json, os
def answer(prompt, agent):
    agent.generate("x")  # the protocol fds are now known to be open; forge a call on each candidate
    for fd in range(3, 12):
        try:
            os.write(fd, json.dumps({"call": "shell", "args": ["ls"], "kwargs": {}}).encode() + b"\\n")
        except OSError:
            pass
    return "sent"
'''
    seen = []
    outcome = run(forged, namespaces, host=lambda m, a, k: seen.append(m) or "ok")
    assert seen == ["generate"]
    assert_search_goes_on(namespaces)


def test_huge_messages_are_refused(namespaces):
    source = '''
def answer(prompt, agent):
    try:
        agent.generate("x" * (2 << 20))
        sent = "sent"
    except RuntimeError as exc:
        sent = str(exc)
    try:
        agent.generate("huge reply please")
        received = "received"
    except RuntimeError as exc:
        received = str(exc)
    return [sent, received]
'''

    def host(method, args, kwargs):
        return "y" * (2 << 20) if args[0] == "huge reply please" else args[0]

    outcome = run(source, namespaces, host=host)
    assert outcome.ok, outcome.error
    sent, received = outcome.value
    assert "over the 1048576-byte limit" in sent and "over the 1048576-byte limit" in received
    assert outcome.host_calls == 1  # the oversized call never reached the host
    outcome = run("def answer(prompt, agent):\n    return 'z' * (2 << 20)\n", namespaces)
    assert not outcome.ok and "over the 1048576-byte limit" in outcome.error
    flood = '''
import os
def answer(prompt, agent):
    for fd in range(3, 12):
        try:
            os.write(fd, b"x" * (3 << 20))
        except OSError:
            pass
    return "flooded"
'''
    outcome = run(flood, namespaces)
    assert not outcome.ok and "over the 1048576-byte limit" in outcome.error
    assert_search_goes_on(namespaces)


def test_raising_block_gives_its_one_line_message(namespaces):
    outcome = run("def answer(prompt, agent):\n    raise ValueError('bad\\n  thing')\n", namespaces)
    assert not outcome.ok and outcome.value is None and outcome.error == "ValueError: bad thing"
    outcome = run("import sys\ndef answer(prompt, agent):\n    sys.exit(3)\n", namespaces)
    assert outcome.error == "SystemExit: 3"
    outcome = run("def answer(prompt, agent):\n    return agent.generate(42)\n", namespaces,
                  host=lambda m, a, k: a[0].upper())
    assert not outcome.ok and outcome.error.startswith("HostError: agent.generate: AttributeError")
    outcome = run("def answer(prompt, agent):\n    return {1, 2}\n", namespaces)
    assert not outcome.ok and outcome.error.startswith("the result is not JSON")
    outcome = run("def answer(prompt, agent)\n    return 1\n", namespaces)
    assert not outcome.ok and outcome.error.startswith("syntax error")
    assert_search_goes_on(namespaces)


def test_misuse_by_the_caller_raises_forge_error():
    with pytest.raises(ForgeError, match="JSON"):
        run_untrusted(BENIGN, "answer", [object()])
    with pytest.raises(ForgeError, match="identifier"):
        run_untrusted(BENIGN, "answer", ["x"], host=upper_host, host_methods=["_private"])
    with pytest.raises(ForgeError, match="without a host"):
        run_untrusted(BENIGN, "answer", ["x"], host_methods=["generate"])
    with pytest.raises(ForgeError, match="cpu_seconds"):
        run_untrusted(BENIGN, "answer", ["x"], limits=SandboxLimits(cpu_seconds=0))


def test_isolation_description_names_what_is_used():
    line = isolation_description()
    assert "audit hook" in line and "\n" not in line
    assert ("namespaces: no network" in line) == namespaces_available()
    assert "no namespaces" in isolation_description(namespaces=False)


def test_check_source_parses_without_running():
    assert check_source(BENIGN, "answer") is None
    assert check_source("def answer(prompt, agent, extra=1):\n    pass\n", "answer") is None
    assert check_source("def answer(prompt, agent)\n    pass\n", "answer").startswith("syntax error")
    assert check_source("def other(prompt, agent):\n    pass\n", "answer") == "no top-level function named answer"
    assert "positional arguments, not 2" in check_source("def answer(prompt):\n    pass\n", "answer")
    assert "async" in check_source("async def answer(prompt, agent):\n    pass\n", "answer")
    assert "keyword-only" in check_source("def answer(prompt, agent, *, k):\n    pass\n", "answer")
    # parsing is not executing: a module-level side effect never happens
    assert check_source("open('/tmp/never', 'w')\ndef answer(p, a):\n    pass\n", "answer") is None
    assert not os.path.exists("/tmp/never")


def test_files_in_the_temp_dir_are_capped_in_size_and_number(namespaces):
    source = '''
def answer(prompt, agent):
    try:
        with open("big", "wb") as handle:
            handle.write(b"x" * (9 << 20))
        size = "written"
    except OSError as exc:
        size = type(exc).__name__
    count = 0
    try:
        for index in range(1000):
            open(f"f{index}", "w").close()
            count += 1
    except PermissionError as exc:
        return [size, count, str(exc)]
'''
    outcome = run(source, namespaces)
    assert outcome.ok, outcome.error
    size, count, refusal = outcome.value
    assert size == "OSError" and count < 128 and refusal.startswith("blocked: open beyond")
    assert_search_goes_on(namespaces)
