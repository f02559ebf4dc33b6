"""The sandbox layer: runs untrusted, machine-generated Python (an ADAS "agent block") in a separate process.

Imports only the standard library and `agent_forge.errors`. What it is, honestly: a fresh interpreter in its own
process group with rlimits (CPU seconds, address space, processes, file size, open files, no core dumps), a
`sys.addaudithook` hook installed before the code runs (no fork/exec/spawn/kill, no sockets, no ctypes/cffi
or other denied imports, no writes outside a temp dir, reads only in the temp dir and the standard library, no
trace/profile/audit-hook/heap-walking escapes), stdout/stderr pointed at /dev/null, a wall-time limit that kills
the process group, and a narrow JSON-lines API to the host. Where util-linux `unshare` works (root with
CAP_SYS_ADMIN, as on our machines) the child also gets network, PID and mount namespaces: no network at all,
no other processes visible, every mount read-only, a tmpfs temp dir, and the FFI extension modules hidden.
It is NOT a seccomp/gVisor-grade sandbox: audit hooks are a CPython feature that a memory-corruption bug in
the interpreter could bypass, and without namespaces the file system and network are guarded by the hook alone.
`isolation_description()` says which of the two this machine gives. Nothing generated is ever `exec`'d in the
calling process; `check_source` only parses.
"""

from .isolation import isolation_description, namespaces_available
from .runner import SandboxLimits, SandboxOutcome, run_untrusted
from .source import check_source

__all__ = ["SandboxLimits", "SandboxOutcome", "check_source", "isolation_description", "namespaces_available",
           "run_untrusted"]
