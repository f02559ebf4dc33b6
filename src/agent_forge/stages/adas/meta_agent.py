"""The ADAS stage's optional meta-agent: an OpenAI-compatible chat model that proposes new agent blocks as code.

    meta = MetaAgent("http://127.0.0.1:8000", "qwen2.5-coder", api_key=None)
    proposals = meta.propose({"parents": [{"name": ..., "source": ..., "fitness": 0.41}, ...]}, n=4, seed=7)

One request per `propose` call, deterministic (temperature 0, the given `seed`), POSTed to
`{endpoint}/v1/chat/completions`. The system prompt describes the narrow API a block gets (an entry
`def answer(prompt: str, agent) -> str` and the `agent.*` host methods in `HOST_METHODS`); the user message
carries `context` (the parents the caller selected, with their fitness: never a whole archive) and asks for `n`
designs, each a heading, a rationale and one fenced ```python block. Each block is only parsed here
(`sandbox.check_source`); running it is the sandbox's job. Blocks that fail the check, and designs without a code
block, are dropped with a logged one-line reason. Transport failures, non-200 answers and malformed replies raise
`ForgeError` with one line; the stage catches it and goes on with evolution alone.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from ...errors import ForgeError
from ...sandbox import check_source

log = logging.getLogger("agent_forge.adas")

ENTRY = "answer"
HOST_METHODS = ("generate", "generate_many", "confidence", "search_memory", "calculate")
MAX_CONTEXT_CHARS = 60_000  # the caller selects parents; a larger context is a caller bug, not a prompt
MAX_RATIONALE_CHARS = 600

SYSTEM_PROMPT = """You design agent blocks: small Python functions that answer a task prompt by calling a \
language model and a few tools through a narrow API. Write exactly this entry point:

def answer(prompt: str, agent) -> str:
    ...

`agent` has only these methods (anything else raises AttributeError):
- agent.generate(prompt: str, temperature: float = 0.0, think: bool | None = None, max_new_tokens: int = 64) -> str
- agent.generate_many(prompts: list[str], temperature: float = 0.0, think: bool | None = None, \
max_new_tokens: int = 64) -> list[str]
- agent.confidence(prompt: str, answer: str) -> float   # 0..1, how sure the model is of `answer`
- agent.search_memory(query: str, k: int = 3) -> list[str]
- agent.calculate(expression: str) -> str   # arithmetic only

Rules: use only the Python standard library (json, re, math, collections, itertools, statistics, ...); no files, \
network, processes, threads or ctypes (the block runs in a sandbox that refuses them); no print; keep it short \
and deterministic; return the final answer as a plain string. Model calls are the budget: use few.

Answer with the requested number of designs, each in this form:

### Design: <short_name>
Rationale: <one or two sentences: what it changes relative to the parents and why it should score higher>
```python
def answer(prompt: str, agent) -> str:
    ...
```"""

HEADING = re.compile(r"^#{1,6}[ \t]*Design[ \t]*\d*[ \t]*[:.\-][ \t]*(?P<name>.*?)[ \t]*$", re.M | re.I)
FENCE = re.compile(r"```[ \t]*(?P<lang>[A-Za-z0-9_+-]*)[ \t]*\n(?P<code>.*?)```", re.S)


@dataclass(frozen=True)
class Proposal:
    name: str
    source: str
    rationale: str


def one_line(text: Any, limit: int = 200) -> str:
    return " ".join(str(text).split())[:limit]


def post_json(url: str, payload: dict, headers: dict[str, str], timeout_s: float,
              *, use_httpx: bool | None = None) -> tuple[int, bytes]:
    """POST `payload` as JSON; (status, body). httpx when installed (or asked for), else urllib; every transport
    failure is a one-line `ForgeError`."""
    if use_httpx is None:
        try:
            import httpx  # noqa: F401  (probing only)
            use_httpx = True
        except ImportError:
            use_httpx = False
    return _post_httpx(url, payload, headers, timeout_s) if use_httpx else _post_urllib(url, payload, headers,
                                                                                        timeout_s)


def _post_httpx(url: str, payload: dict, headers: dict[str, str], timeout_s: float) -> tuple[int, bytes]:
    import httpx

    try:
        with httpx.Client(timeout=timeout_s) as client:
            response = client.post(url, json=payload, headers=headers)
    except httpx.HTTPError as exc:
        raise ForgeError(f"meta-agent request to {url} failed: {one_line(exc) or type(exc).__name__}") from None
    return response.status_code, response.content


def _post_urllib(url: str, payload: dict, headers: dict[str, str], timeout_s: float) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 (the configured endpoint)
            return response.status, response.read()
    except urllib.error.HTTPError as exc:  # a non-2xx answer: its status and body, judged by the caller
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ForgeError(f"meta-agent request to {url} failed: {one_line(exc) or type(exc).__name__}") from None


def _reply_text(status: int, body: bytes) -> str:
    if status != 200:
        raise ForgeError(f"meta-agent endpoint answered HTTP {status}: {one_line(body.decode('utf-8', 'replace'))}")
    try:
        reply = json.loads(body)
        content = reply["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise ForgeError(f"meta-agent reply is not a chat completion: {one_line(body.decode('utf-8', 'replace'))}") \
            from None
    if not isinstance(content, str):
        raise ForgeError("meta-agent reply has no text content")
    return content


def _sections(text: str) -> list[tuple[str, str]]:
    """(heading name, body) per design; a reply without headings is one unnamed design."""
    headings = list(HEADING.finditer(text))
    if not headings:
        return [("", text)]
    ends = [match.start() for match in headings[1:]] + [len(text)]
    return [(match.group("name"), text[match.end():end]) for match, end in zip(headings, ends)]


def _code_block(body: str) -> tuple[str, str] | None:
    """(code, text before it) of the first ```python (or unlabelled) fence in a design's body."""
    for match in FENCE.finditer(body):
        if match.group("lang").lower() in ("python", "py", "python3", ""):
            return match.group("code"), body[:match.start()]
    return None


def _slug(name: str, index: int, taken: set[str]) -> str:
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")[:40] or f"proposal_{index}"
    unique, suffix = slug, 2
    while unique in taken:
        unique, suffix = f"{slug}_{suffix}", suffix + 1
    taken.add(unique)
    return unique


def _rationale(text: str) -> str:
    text = re.sub(r"^\s*\**rationale\**\s*:\s*", "", text.strip(), flags=re.I)
    return one_line(text, MAX_RATIONALE_CHARS)


def parse_proposals(text: str, n: int) -> list[Proposal]:
    """The checked designs in a reply, at most `n`; the others are logged and dropped."""
    proposals: list[Proposal] = []
    taken: set[str] = set()
    for index, (name, body) in enumerate(_sections(text)):
        label = one_line(name, 60) or f"#{index}"
        found = _code_block(body)
        if found is None:
            log.warning("meta-agent design %s dropped: no python code block", label)
            continue
        code, before = found
        problem = check_source(code, ENTRY, arity=2)
        if problem is not None:
            log.warning("meta-agent design %s dropped: %s", label, one_line(problem))
            continue
        proposals.append(Proposal(_slug(name, index, taken), code.strip() + "\n", _rationale(before)))
    if len(proposals) > n:
        log.info("meta-agent proposed %d designs; keeping the first %d", len(proposals), n)
    return proposals[:n]


class MetaAgent:
    """A chat-completions client that turns selected parent designs into new proposals (see the module doc)."""

    def __init__(self, endpoint: str, model: str, api_key: str | None = None, timeout_s: float = 60.0,
                 *, max_tokens: int = 2048, use_httpx: bool | None = None):
        if not isinstance(endpoint, str) or not endpoint.startswith(("http://", "https://")):
            raise ForgeError(f"meta-agent endpoint must be an http(s) URL, not {endpoint!r}")
        if not model:
            raise ForgeError("meta-agent model must be named")
        if not timeout_s > 0:
            raise ForgeError(f"meta-agent timeout_s must be positive, not {timeout_s!r}")
        base = endpoint.rstrip("/")
        self.url = (base[:-3] if base.endswith("/v1") else base) + "/v1/chat/completions"
        self.model, self.api_key, self.timeout_s = model, api_key, timeout_s
        self.max_tokens, self.use_httpx = max_tokens, use_httpx

    def request(self, context: dict, n: int, seed: int) -> dict:
        """The chat-completions payload for one `propose` call."""
        if not isinstance(n, int) or n < 1:
            raise ForgeError(f"meta-agent n must be a positive int, not {n!r}")
        try:
            context_json = json.dumps(context, indent=1, sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ForgeError(f"meta-agent context must be JSON: {one_line(exc)}") from None
        if len(context_json) > MAX_CONTEXT_CHARS:
            raise ForgeError(f"meta-agent context has {len(context_json)} characters, over {MAX_CONTEXT_CHARS}; "
                             "select fewer parents")
        user = (f"Parent designs with their fitness (higher is better):\n```json\n{context_json}\n```\n\n"
                f"Propose {n} new, different design{'s' if n > 1 else ''} likely to score higher. "
                "Each: a '### Design: <short_name>' heading, a 'Rationale:' line, one ```python block.")
        return {"model": self.model, "temperature": 0.0, "seed": int(seed), "max_tokens": self.max_tokens,
                "messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]}

    def propose(self, context: dict, n: int, seed: int) -> list[Proposal]:
        """At most `n` checked proposals (possibly none); `ForgeError` when the endpoint fails."""
        payload = self.request(context, n, seed)
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        status, body = post_json(self.url, payload, headers, self.timeout_s, use_httpx=self.use_httpx)
        return parse_proposals(_reply_text(status, body), n)
