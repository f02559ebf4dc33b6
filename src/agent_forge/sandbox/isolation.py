"""How the sandbox's child process is started: in Linux namespaces when this machine allows it, else plainly.

With util-linux `unshare` and the right to use it (root in a container with CAP_SYS_ADMIN, as here), the child
runs in new network, PID and mount namespaces: no network interface but a down loopback, no view of (or signal
to) the host's processes, a read-only view of every mount, a fresh 64 MiB tmpfs over its temp dir, and
/dev/null bound over the foreign-function and test extension modules, so that even a way around the audit hook
could not load them. A tiny `sh` preamble does the mounts and stays PID 1 of the namespace (a PID 1 ignores
signals it has no handler for, which would defeat RLIMIT_CPU); when it dies, the kernel kills the namespace.

Without namespaces the child is a plain process in its own session; the rlimits and the audit hook remain.
Whether namespaces work is probed once per process (`namespaces_available`).
"""

from __future__ import annotations

import functools
import glob
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

CHILD_SCRIPT = Path(__file__).with_name("_child.py")
TMPFS_SIZE = "64m"

# extension modules hidden behind /dev/null inside the mount namespace (patterns under lib-dynload)
HIDDEN_EXTENSIONS = ("_ctypes", "_ctypes_test", "_testcapi", "_testinternalcapi", "_testbuffer", "_testmultiphase",
                     "_xxsubinterpreters", "_xxinterpchannels", "_posixsubprocess", "_socket", "_ssl", "mmap",
                     "_posixshmem", "_multiprocessing", "fcntl", "termios")

# $1 = temp dir, then extension files to hide, "--", then the child's command line. The temp dir gets a tmpfs
# first (so the remount loop skips it), then every other mount is remounted read-only; a mount whose name
# /proc/self/mounts escapes (a space in it) cannot be remounted and stays as it is.
PREAMBLE = """set -e
T="$1"; shift
mount -t tmpfs -o size=%s,mode=700 forge-sandbox "$T"
while [ "$1" != "--" ]; do mount --bind /dev/null "$1"; shift; done; shift
while read -r _dev mnt _rest; do
  [ "$mnt" = "$T" ] && continue
  mount -o remount,bind,ro "$mnt" 2>/dev/null || true
done < /proc/self/mounts
"$@"
""" % TMPFS_SIZE

UNSHARE_FLAGS = ("--net", "--pid", "--mount", "--fork", "--kill-child")


def read_roots() -> list[str]:
    """Directories a block may read besides its temp dir: the standard library (so its imports work)."""
    paths = sysconfig.get_paths()
    roots = {os.path.realpath(paths[key]) for key in ("stdlib", "platstdlib")}
    return sorted(roots)


def child_argv() -> list[str]:
    # -I: ignore PYTHON* variables and the user site; -S: no site-packages (a block gets the standard library
    # only); -B: no .pyc writes into the (read-only to it) standard library
    return [sys.executable, "-I", "-S", "-B", str(CHILD_SCRIPT)]


def hidden_extension_files() -> list[str]:
    folder = os.path.join(sysconfig.get_paths()["platstdlib"], "lib-dynload")
    found = []
    for name in HIDDEN_EXTENSIONS:
        found.extend(sorted(glob.glob(os.path.join(folder, f"{name}.*.so"))))
    return found


def namespace_command(tmpdir: str, argv: list[str]) -> list[str]:
    unshare = shutil.which("unshare") or "unshare"
    return [unshare, *UNSHARE_FLAGS, "sh", "-c", PREAMBLE, "sh", tmpdir, *hidden_extension_files(), "--", *argv]


@functools.lru_cache(maxsize=1)
def namespaces_available() -> bool:
    """Whether `unshare` can give a child net/pid/mount namespaces with the read-only remounts (probed once)."""
    if sys.platform != "linux" or not all(shutil.which(tool) for tool in ("unshare", "mount", "sh")):
        return False
    with tempfile.TemporaryDirectory(prefix="forge-sandbox-probe-") as tmpdir:
        command = namespace_command(tmpdir, ["sh", "-c", 'touch "$0/ok" && [ ! -w / ]', tmpdir])
        try:
            done = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, timeout=20, start_new_session=True, check=False)
        except (OSError, subprocess.SubprocessError):
            return False
        return done.returncode == 0


def isolation_description(namespaces: bool | None = None) -> str:
    """One line naming the isolation `run_untrusted` gives here (`namespaces=None`: the default choice)."""
    use = namespaces_available() if namespaces is None else namespaces and namespaces_available()
    base = "separate process, rlimits (cpu, address space, nproc, file size, open files, no core), audit hook"
    if use:
        return base + "; Linux namespaces: no network, own PID space, read-only mounts, tmpfs temp dir"
    return base + "; no namespaces (unshare unavailable): network and file system guarded by the audit hook only"
