"""`agent-forge serve`: check what may be exposed, bind, start uvicorn, load the agent in the background.

Ctrl-C (or SIGTERM) stops it gracefully (requests in flight get up to 5 s) and the command exits with 0.
The app (and with it the interaction log) is built before the socket is bound, so a bad log path or an
unreachable database is one `error:` line and nothing listens.

The socket is bound here before uvicorn starts, so a port in use is one `error:` line (and `--port 0` picks a
free port, which the start-up message names). Without an API key the server refuses non-loopback hosts and
says loudly that it is unauthenticated. A load failure stops the server with that error.

Exercise: `agent-forge serve runs/tiny` then `curl localhost:8000/health`.
"""

from __future__ import annotations

import logging
import socket

from ..errors import ForgeError
from .settings import API_KEY_ENV, ServeSettings, check_exposure
from .source import resolve_agent_source


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port); ForgeError naming the problem (e.g. the port is in use)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise ForgeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(source: str, settings: ServeSettings, *, log_level: str = "info", say=print) -> None:
    """Serve the agent at `source` (run directory, agent folder or GGUF) until interrupted."""
    import uvicorn

    from .app import create_app

    path, name = resolve_agent_source(source)
    check_exposure(settings)
    failure: list[BaseException] = []
    server: uvicorn.Server | None = None

    def stop_on_load_error(exc: BaseException) -> None:
        failure.append(exc)
        if server is not None:
            server.should_exit = True

    # built before binding: a bad interaction log (path, URL, retention) is one error line and nothing listens
    app = create_app(settings, source=path, model_name=name, on_load_error=stop_on_load_error)
    sock = bind_socket(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    served = settings.model_name or name
    if not settings.api_keys:
        say("!" * 100)
        say(f"! NO API KEY: anyone who can connect to {shown}:{port} can use this server. It listens on loopback only.")
        say(f"! Set --api-key KEY or {API_KEY_ENV} to require 'Authorization: Bearer KEY' (and to listen elsewhere).")
        say("!" * 100)
    say(f"serving {path} as model {served!r} on http://{shown}:{port}/v1 (loading; GET /health says 200 when ready)")
    state = app.state.forge
    if state.log is not None:
        say(f"logging every answer to {state.log.describe()} (version {state.model_version}); "
            f"dashboard: http://{shown}:{port}/dashboard")
    config = uvicorn.Config(app, log_level=log_level, timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    logger = logging.getLogger("agent_forge.serve")  # our messages (agent loaded, failures) beside uvicorn's
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(log_level.upper() if log_level.upper() in logging.getLevelNamesMapping() else logging.INFO)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn shut down gracefully, then re-raised the Ctrl-C: the normal way to stop
        pass
    finally:
        sock.close()
    if failure:
        raise ForgeError(f"cannot load the agent at {path}: {failure[0]}")
