"""A throwaway PostgreSQL server for tests: `initdb` + `pg_ctl` on a temporary folder, loopback, a free port.

Uses Debian's `postgresql` package (`scripts/setup.sh` installs it): the binaries on PATH or under
/usr/lib/postgresql/<version>/bin. PostgreSQL refuses to run as root, so as root the cluster runs as the
`postgres` system user (`runuser`). `postgres_unavailable()` says why none can start (the tests skip with it).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _as_user() -> list[str]:
    if os.geteuid() != 0:
        return []
    return ["runuser", "-u", "postgres", "--"]


def postgres_unavailable() -> str | None:
    """None when a cluster can be started here, else the reason it cannot."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install 'agent-forge[postgres]')"
    if not (_binary("initdb") and _binary("pg_ctl")):
        return "PostgreSQL's initdb/pg_ctl are missing (apt-get install postgresql; scripts/setup.sh does it)"
    if os.geteuid() == 0:
        import pwd

        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root without a 'postgres' user to run the server as"
        if not shutil.which("runuser"):
            return "running as root without runuser to drop to the 'postgres' user"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def postgres_cluster():
    """Yield the URL of a fresh PostgreSQL server on 127.0.0.1; stop it and delete its files on exit."""
    root = Path(tempfile.mkdtemp(prefix="agent-forge-pg-"))
    data = root / "data"
    user = _as_user()
    if user:
        shutil.chown(root, "postgres", "postgres")
    port = _free_port()
    run = lambda *args: subprocess.run([*user, *args], check=True, capture_output=True, text=True, timeout=120)  # noqa: E731
    started = False
    try:
        run(_binary("initdb"), "-D", str(data), "-A", "trust", "-U", "forge", "-E", "UTF8", "--no-sync")
        run(_binary("pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "60", "-o",
            f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={root}", "start")
        started = True
        yield f"postgresql://forge@127.0.0.1:{port}/postgres"
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"cannot start PostgreSQL: {exc.stderr or exc.stdout}") from None
    finally:
        if started:
            subprocess.run([*user, _binary("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                           capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)
