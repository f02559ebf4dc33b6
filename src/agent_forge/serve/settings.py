"""What a server allows: where it listens, who may call it (API keys), and the limits every request meets.

No key configured means the server listens on the loopback interface only (127.0.0.1, ::1, localhost): a
non-loopback `--host` without a key is refused before anything binds. Keys come from `--api-key` (repeatable)
and from the `AGENT_FORGE_API_KEY` environment variable (comma-separated for several).

The interaction log (`interactions.InteractionLog`): `log_target` is a SQLite file or a `postgresql://` URL
(None: nothing is logged; the CLI's default is `interactions.sqlite` beside what it serves), with retention
limits and the secrets to redact (the API keys always are). The drift watch's canary runs every
`canary_every_s` seconds (None: off; it needs the log to keep its history). Serving from a version store, the
server polls its `CURRENT` pointer every `watch_versions_s` seconds and swaps to the version it names.

Exercise: `pytest tests/serve/test_settings.py`.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from typing import Iterable, Mapping

from ..errors import ForgeError

API_KEY_ENV = "AGENT_FORGE_API_KEY"


@dataclass(frozen=True)
class ServeSettings:
    """Everything `agent-forge serve` is told; the defaults are the command's defaults."""

    host: str = "127.0.0.1"
    port: int = 8000
    api_keys: tuple[str, ...] = ()
    model_name: str | None = None  # None: derived from the run or folder name
    max_batch: int = 32  # rows decoded together (1 = one request at a time)
    max_concurrent: int = 256  # requests in flight (queued or generating); more get 429
    max_body_bytes: int = 1_000_000  # larger request bodies get 413
    max_prompt_tokens: int | None = None  # None: the model's context length minus one
    max_tokens: int = 1024  # the largest max_tokens a request may ask for
    default_max_tokens: int = 256  # when a request gives none (capped by the room left in the context)
    max_n: int = 8  # choices per request
    request_timeout_s: float = 300.0  # a request still unanswered after this gets 408 and is dropped
    device: str | None = None
    dtype: str | None = None
    # interaction log, feedback, dashboard, drift watch
    log_target: str | None = None  # a SQLite path or a postgresql:// URL; None: no log
    log_synchronous: str = "NORMAL"  # SQLite's mode: NORMAL survives a killed server, FULL also a power cut
    retention_days: float | None = None
    retention_rows: int | None = None
    redact: tuple[str, ...] = ()  # secrets (literal, or "re:<pattern>") never written to the log
    facts_world: int | None = None  # the knowledge-base seed `facts` prompts are verified against
    model_version: str | None = None  # None: derived from what is served (`interactions.version_of`)
    version_store: str | None = None  # the version store served from (dashboard history, hot swap)
    watch_versions_s: float = 1.0  # poll the store's CURRENT pointer this often and swap versions (0: never)
    canary_every_s: float | None = None  # None: no drift watch
    canary_per_domain: int = 6
    canary_tolerance: float = 5.0  # points below the best of the recent runs that count as falling
    max_feedback_bytes: int = 16_384  # larger feedback bodies get 413

    def __post_init__(self) -> None:
        positive = {
            "max_batch": self.max_batch, "max_concurrent": self.max_concurrent, "max_body_bytes": self.max_body_bytes,
            "max_tokens": self.max_tokens, "default_max_tokens": self.default_max_tokens, "max_n": self.max_n,
        }
        bad = [f"{name}={value}" for name, value in positive.items() if value < 1]
        if self.max_prompt_tokens is not None and self.max_prompt_tokens < 1:
            bad.append(f"max_prompt_tokens={self.max_prompt_tokens}")
        if self.request_timeout_s <= 0:
            bad.append(f"request_timeout_s={self.request_timeout_s}")
        if self.watch_versions_s < 0:
            bad.append(f"watch_versions_s={self.watch_versions_s}")
        if self.canary_every_s is not None and self.canary_every_s < 0:
            bad.append(f"canary_every_s={self.canary_every_s}")
        if self.canary_per_domain < 1:
            bad.append(f"canary_per_domain={self.canary_per_domain}")
        if self.max_feedback_bytes < 1:
            bad.append(f"max_feedback_bytes={self.max_feedback_bytes}")
        if not 0 <= self.port <= 65535:
            bad.append(f"port={self.port}")
        if bad:
            raise ForgeError(f"server limits must be positive: {', '.join(bad)}")


def resolve_api_keys(cli_keys: Iterable[str] = (), environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """Keys from the command line and `AGENT_FORGE_API_KEY` (comma-separated), without blanks or duplicates."""
    environ = os.environ if environ is None else environ
    found = [*cli_keys, *environ.get(API_KEY_ENV, "").split(",")]
    return tuple(dict.fromkeys(k.strip() for k in found if k and k.strip()))


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1); False for 0.0.0.0, :: and other names."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(settings: ServeSettings) -> None:
    """Refuse to listen beyond loopback without an API key."""
    if not settings.api_keys and not is_loopback(settings.host):
        raise ForgeError(
            f"refusing to listen on {settings.host} without an API key: anyone who can reach it could use the model; "
            f"pass --api-key KEY (or set {API_KEY_ENV}), or keep --host 127.0.0.1"
        )
