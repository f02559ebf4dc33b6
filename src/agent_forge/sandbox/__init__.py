"""The sandbox layer: runs untrusted, machine-generated Python (an ADAS "agent block") in a separate process.

Imports only the standard library and `agent_forge.errors`; nothing generated is ever `exec`'d in the calling
process (`check_source` only parses). What it is, honestly:
- a fresh interpreter (`python -I -S -B`: no environment, no site-packages, the standard library only), in its
  own session and process group, with a scrubbed environment and a fresh temp dir as its working directory;
- rlimits: CPU seconds, address space, processes (binds only for non-root), file size (8 MiB), open files,
  no core dumps; a wall-time limit after which the whole process group is killed;
- a `sys.addaudithook` hook (hooks cannot be removed) refusing fork/exec/spawn/system/kill, sockets, ctypes/cffi
  and other denied imports (also when loaded by hand through `_imp`), writes outside the temp dir (and more than
  128 write-opens in it), reads outside the temp dir and the standard library, links, chdir, trace/profile,
  heap walking and hand-made code objects; posix functions that raise no audit event are deleted first;
- the block's stdout/stderr go to /dev/null; it talks to the host only through JSON lines on dedicated pipes,
  each capped at `max_message_bytes`, and only for the `host_methods` the caller allows;
- where util-linux `unshare` works (root with CAP_SYS_ADMIN, as on our machines), also network, PID and mount
  namespaces: no network at all, no other process visible, every mount read-only, a 64 MiB tmpfs temp dir,
  and the FFI/test extension modules hidden behind /dev/null.
It is NOT a seccomp/gVisor-grade sandbox: audit hooks are a CPython feature that a memory-corruption bug in
the interpreter could bypass, and without namespaces the file system and network are guarded by the hook alone.
`isolation_description()` says which of the two this machine gives.
"""

from .isolation import isolation_description, namespaces_available
from .runner import SandboxLimits, SandboxOutcome, run_untrusted
from .source import check_source

__all__ = ["SandboxLimits", "SandboxOutcome", "check_source", "isolation_description", "namespaces_available",
           "run_untrusted"]
