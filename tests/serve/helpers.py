"""Shared by the server tests and the load benchmark: tiny agents to serve, and a real server in a thread.

`build_tool_agent` trains a tiny model (hidden 32) for a few seconds to answer three prompts as told,
one of them with a real Hermes-style tool call when `get_time` is declared, so the tool path is exercised
by what a model actually generated. `running_server` starts uvicorn on 127.0.0.1 with a free port in a
background thread and stops it on exit.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import urllib.request
from pathlib import Path

import torch

from agent_forge.config import TinyModelConfig
from agent_forge.models import build_tiny_model, build_tiny_tokenizer, encode_pairs, save_model
from agent_forge.serve import ServeSettings
from agent_forge.serve.protocol import ChatMessage
from agent_forge.serve.prompts import render_chat

TOOLS = [{
    "type": "function",
    "function": {"name": "get_time", "description": "the current time",
                 "parameters": {"type": "object", "properties": {}}},
}]
TOOL_CALL = '<tool_call>{"name":"get_time","arguments":{}}</tool_call>'
TIME_PROMPT = "what time is it?"
# (user prompt, declared tools, answer the agent is trained to give)
EXAMPLES = [
    ("say hi", None, "hi there"),
    (TIME_PROMPT, TOOLS, TOOL_CALL),
    ("count to five", None, "1 2 3 4 5"),
]
ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz+-*=?:,.;()[]<>|_ \n{}\"/'!#"

AGENT_CONFIG = TinyModelConfig(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
    max_position_embeddings=512,
)


def rendered_prompt(tokenizer, prompt: str, tools) -> str:
    return render_chat(tokenizer, [ChatMessage(role="user", content=prompt)], tools)


def build_tool_agent(path: Path, steps: int = 300) -> Path:
    """Train and save the tiny tool agent at `path` (a few seconds with one thread)."""
    probe = build_tiny_tokenizer(ALPHABET)
    texts = [rendered_prompt(probe, p, t) + a for p, t, a in EXAMPLES]
    tokenizer = build_tiny_tokenizer(ALPHABET + "".join(texts))
    prompts = [rendered_prompt(tokenizer, p, t) for p, t, _ in EXAMPLES]
    answers = [a for _, _, a in EXAMPLES]
    model = build_tiny_model(tokenizer, AGENT_CONFIG, seed=0)
    batch = encode_pairs(tokenizer, prompts, answers, render=False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        loss = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    save_model(model, tokenizer, path)
    return path


def build_plain_agent(path: Path, config: TinyModelConfig | None = None, seed: int = 0) -> Path:
    """An untrained tiny agent (varied, never-ending text: every answer runs to max_tokens)."""
    tokenizer = build_tiny_tokenizer(ALPHABET)
    model = build_tiny_model(tokenizer, config or AGENT_CONFIG, seed=seed)
    save_model(model, tokenizer, path)
    return path


def get_json(url: str, headers: dict | None = None) -> tuple[int, dict | str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read().decode()
            status = response.status
    except urllib.error.HTTPError as error:
        body, status = error.read().decode(), error.code
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body


@contextlib.contextmanager
def running_server(settings: ServeSettings, *, agent=None, source=None, model_name: str = "tiny", wait_ready=True):
    """(base URL, app) of a real uvicorn server on 127.0.0.1:<free port>, stopped on exit."""
    import uvicorn

    from agent_forge.serve import create_app
    from agent_forge.serve.server import bind_socket

    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    app = create_app(settings, agent=agent, source=source, model_name=model_name)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        while wait_ready and get_json(base + "/health")[0] != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("the agent did not load")
            time.sleep(0.02)
        yield base, app
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()
