"""The meta-agent against a real chat-completions server on loopback, end to end into the sandbox.

The server (`http.server` in a thread, port 0) serves scripted replies chosen by the request's model name: a
reply of four designs (a good one, a hostile one, one with a syntax error, one without code), an HTTP 500, a
body that is not JSON. It records every request and stops at the end of each test. Both transports (httpx and
urllib) are exercised.
"""

import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agent_forge.errors import ForgeError
from agent_forge.sandbox import SandboxLimits, run_untrusted
from agent_forge.stages.adas.meta_agent import HOST_METHODS, SYSTEM_PROMPT, MetaAgent, parse_proposals

GOOD = '''def answer(prompt: str, agent) -> str:
    notes = agent.search_memory(prompt, k=2)
    draft = agent.generate(prompt + " | " + "; ".join(notes), temperature=0.0)
    if agent.confidence(prompt, draft) < 0.5:
        draft = agent.generate_many([prompt, draft])[0]
    return draft + " = " + agent.calculate("2+3")
'''

HOSTILE = '''import os

def answer(prompt: str, agent) -> str:
    open({target!r}, "w").write("escaped")
    import socket
    socket.create_connection(("127.0.0.1", {port}))
    os.system("touch {target}")
    return "pwned"
'''


def designs_reply(target: str, port: int) -> str:
    return "\n".join([
        "Here are four designs.",
        "### Design: Memory then check",
        "Rationale: looks up memory first and re-asks when the model is unsure.",
        "```python", GOOD, "```",
        "### Design: Escape artist",
        "Rationale: tries to leave the sandbox.",
        "```python", HOSTILE.format(target=target, port=port), "```",
        "### Design: Broken",
        "Rationale: a syntax error.",
        "```python", "def answer(prompt, agent)\n    return prompt\n", "```",
        "### Design: All talk",
        "Rationale: describes an idea but gives no code.",
    ])


def completion(content: str) -> dict:
    return {"id": "cmpl-1", "object": "chat.completion", "model": "designer",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}]}


@pytest.fixture
def listener():
    """A loopback listener the hostile design tries to reach; it must never see a connection."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        sock.settimeout(0.3)
        yield sock


@pytest.fixture
def server(tmp_path, listener):
    """A scripted chat-completions server; yields (endpoint, recorded requests, escape target)."""
    target = tmp_path / "escaped.txt"
    requests: list[dict] = []
    replies = {
        "designer": (200, json.dumps(completion(designs_reply(str(target), listener.getsockname()[1])))),
        "broken": (500, '{"error": "the model fell over"}'),
        "garbage": (200, "<html>not json</html>"),
        "empty": (200, json.dumps({"choices": []})),
    }

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
            status, text = replies[body["model"]]
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):  # keep the test output clean
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", requests, target
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def small_host(method, args, kwargs):
    """A pure-Python host with the meta-agent's API: `generate` upper-cases its prompt."""
    if method == "generate":
        return args[0].upper()
    if method == "generate_many":
        return [prompt.upper() for prompt in args[0]]
    if method == "confidence":
        return 0.9
    if method == "search_memory":
        return ["fact one", "fact two", "fact three"][: kwargs.get("k", 3)]
    if method == "calculate":
        return str(sum(int(term) for term in args[0].split("+")))
    raise ValueError(method)


LIMITS = SandboxLimits(cpu_seconds=2, memory_bytes=256 << 20, wall_seconds=10)


@pytest.mark.parametrize("use_httpx", [True, False], ids=["httpx", "urllib"])
def test_proposals_run_in_the_sandbox_end_to_end(server, listener, use_httpx, caplog):
    endpoint, requests, target = server
    meta = MetaAgent(endpoint, "designer", api_key="secret", timeout_s=10, use_httpx=use_httpx)
    context = {"parents": [{"name": "plain", "source": "def answer(prompt, agent):\n    return agent.generate(prompt)\n",
                            "fitness": 0.31}]}
    with caplog.at_level(logging.WARNING, logger="agent_forge.adas"):
        proposals = meta.propose(context, n=4, seed=11)

    # the request: deterministic, the API described, the context carried, the key sent
    (request,) = requests
    assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer secret"
    body = request["body"]
    assert body["temperature"] == 0.0 and body["seed"] == 11 and body["model"] == "designer"
    assert body["messages"][0] == {"role": "system", "content": SYSTEM_PROMPT}
    assert "def answer(prompt: str, agent) -> str:" in SYSTEM_PROMPT
    assert all(f"agent.{name}(" in SYSTEM_PROMPT for name in HOST_METHODS)
    assert '"fitness": 0.31' in body["messages"][1]["content"] and "Propose 4 new" in body["messages"][1]["content"]

    # the broken and the code-less designs were dropped with a one-line reason each
    assert [p.name for p in proposals] == ["memory_then_check", "escape_artist"]
    assert proposals[0].rationale == "looks up memory first and re-asks when the model is unsure."
    dropped = [r.getMessage() for r in caplog.records]
    assert any("Broken dropped: syntax error" in line for line in dropped)
    assert any("All talk dropped: no python code block" in line for line in dropped)

    good, hostile = proposals
    outcome = run_untrusted(good.source, "answer", ["what is 2+3?"], host=small_host, host_methods=HOST_METHODS,
                            limits=LIMITS)
    assert outcome.ok, outcome.error
    assert outcome.value == "WHAT IS 2+3? | FACT ONE; FACT TWO = 5" and outcome.host_calls == 4

    outcome = run_untrusted(hostile.source, "answer", ["what is 2+3?"], host=small_host, host_methods=HOST_METHODS,
                            limits=LIMITS)
    assert not outcome.ok and outcome.error.startswith("blocked: open")
    assert not target.exists()
    with pytest.raises(socket.timeout):
        listener.accept()

    # the run goes on: the good design still answers after the hostile one
    again = run_untrusted(good.source, "answer", ["1+1"], host=small_host, host_methods=HOST_METHODS, limits=LIMITS)
    assert again.ok and again.value == "1+1 | FACT ONE; FACT TWO = 5"


@pytest.mark.parametrize("use_httpx", [True, False], ids=["httpx", "urllib"])
def test_endpoint_failures_are_one_line_forge_errors(server, use_httpx):
    endpoint, requests, _ = server
    with pytest.raises(ForgeError, match="HTTP 500: .*the model fell over"):
        MetaAgent(endpoint, "broken", use_httpx=use_httpx).propose({}, n=2, seed=0)
    with pytest.raises(ForgeError, match="not a chat completion"):
        MetaAgent(endpoint, "garbage", use_httpx=use_httpx).propose({}, n=2, seed=0)
    with pytest.raises(ForgeError, match="not a chat completion"):
        MetaAgent(endpoint + "/v1/", "empty", use_httpx=use_httpx).propose({}, n=2, seed=0)
    assert [r["path"] for r in requests] == ["/v1/chat/completions"] * 3  # a trailing /v1 is not doubled
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(ForgeError, match="request to .* failed") as failure:
        MetaAgent(f"http://127.0.0.1:{port}", "designer", timeout_s=5, use_httpx=use_httpx).propose({}, 1, 0)
    assert "\n" not in str(failure.value)


def test_parse_keeps_at_most_n_and_names_uniquely():
    block = "```python\ndef answer(prompt, agent):\n    return prompt\n```"
    text = f"### Design: Same\nRationale: a\n{block}\n### Design: Same\n{block}\n### Design: Third\n{block}"
    proposals = parse_proposals(text, n=2)
    assert [p.name for p in proposals] == ["same", "same_2"]
    unnamed = parse_proposals("Try this:\n" + block, n=3)
    assert [p.name for p in unnamed] == ["proposal_0"] and unnamed[0].source.startswith("def answer(")


def test_caller_misuse_is_refused():
    with pytest.raises(ForgeError, match="http"):
        MetaAgent("ftp://example", "m")
    meta = MetaAgent("http://127.0.0.1:9", "m")
    with pytest.raises(ForgeError, match="positive int"):
        meta.request({}, n=0, seed=0)
    with pytest.raises(ForgeError, match="JSON"):
        meta.request({"x": object()}, n=1, seed=0)


def test_an_agent_with_experts_has_the_no_dispatch_ablation_among_the_seeds():
    from agent_forge.stages.adas.space import DesignSpace

    with_experts = DesignSpace(thinks=False, thought_length=None, has_experts=True, has_tools=True,
                               has_memory=True, layers=4)
    without = DesignSpace(thinks=False, thought_length=None, has_experts=False, has_tools=True,
                          has_memory=True, layers=4)
    ablation = [d for d in with_experts.seeds() if d.name == "no_dispatch"]
    assert len(ablation) == 1 and ablation[0].dispatch == "off"
    assert "no_dispatch" not in [d.name for d in without.seeds()]
    assert len({d.canonical() for d in with_experts.seeds()}) == len(with_experts.seeds())  # all distinct
