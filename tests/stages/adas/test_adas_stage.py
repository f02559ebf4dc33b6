"""The ADAS stage end to end on a tiny agent: it scores the hand-designed seeds and evolved designs on
validation, writes `adas_optimized_model/` with the chosen design, `agent-forge eval` on it reproduces the
stage's test accuracy item for item, the search is deterministic and resumes after a kill."""

from __future__ import annotations

import json
import random

import pytest
import torch
from typer.testing import CliRunner

from agent_forge.cli import app
from agent_forge.config import ForgeConfig
from agent_forge.config.seed import TinyModelConfig
from agent_forge.models import Agent, build_tiny_model, build_tiny_tokenizer, load_agent, save_agent
from agent_forge.models.formats.design import AgentDesign
from agent_forge.stage_contract import StageContext, StageInputs
from agent_forge.stages.adas import run as run_adas
from agent_forge.stages.adas import search as search_module
from agent_forge.tasks import alphabet, make_tasks
from agent_forge.training.supervised import train_supervised

TINY = TinyModelConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=4, max_position_embeddings=256)
SMALL = {"levels": [1, 2], "val_items": 3, "test_items": 3, "children": 2, "max_generations": 2, "patience": 1,
         "bootstrap": 200}


@pytest.fixture(scope="module")
def entering(tmp_path_factory):
    """A tiny model that has learnt a little of every domain's level 1 (so that designs differ in accuracy)."""
    tok = build_tiny_tokenizer(alphabet())
    model = build_tiny_model(tok, TINY, seed=0)
    pairs = [(t.prompt, t.answer) for d in ("arithmetic", "strings", "logic", "facts")
             for t in make_tasks(d, 1, "train", 200, 0)]
    rng = random.Random(0)
    torch.manual_seed(0)
    train_supervised(model, tok, lambda step: rng.sample(pairs, 16), steps=150, lr=3e-3, progress=False)
    path = tmp_path_factory.mktemp("adas") / "entering"
    save_agent(Agent(model.eval(), tok), path)
    return path


def _run(source, stage_dir, **overrides):
    cfg = ForgeConfig.model_validate({"device": "cpu", "adas": SMALL | overrides})
    return run_adas(StageContext.create("adas", cfg, StageInputs(models={"model": source}), stage_dir))


def _stable(metrics: dict) -> dict:
    """The metrics without wall-clock numbers."""
    drop = {"ms_per_answer", "seconds", "eval_command"}  # timings and the run folder

    def clean(value):
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if k not in drop}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    return clean(metrics)


def test_stage_searches_writes_the_design_and_eval_reproduces_its_test_accuracy(entering, tmp_path):
    result = _run(entering, tmp_path / "run" / "08-adas")
    m = result.metrics
    seeds = [e for e in m["archive"] if e["generation"] == 0]
    assert [e["name"] for e in seeds] == ["plain", "self_consistency", "self_refine", "abstain_and_retry"]
    assert seeds[0]["origin"] == "entering" and not seeds[0]["over_budget"]
    assert m["token_budget"] == pytest.approx(4.0 * seeds[0]["tokens_per_answer"], rel=1e-3)
    assert all(e["over_budget"] == (e["tokens_per_answer"] > m["token_budget"]) for e in m["archive"])
    assert any(e["generation"] >= 1 for e in m["archive"])  # evolution proposed and scored designs
    assert len({json.dumps(e["describe"]) for e in m["archive"]}) == len(m["archive"])  # no design scored twice
    assert any(e["pareto"] for e in m["archive"])
    assert (tmp_path / "run" / "08-adas" / "search.png").is_file() and (tmp_path / "run" / "08-adas" / "pareto.png").is_file()
    test = m["test"]
    assert test["difference"]["low"] <= test["difference"]["mean"] <= test["difference"]["high"]

    from agent_forge.pipeline.report_stages import adas_table

    header, rows, caption = adas_table(m)
    assert len(rows) == len(m["archive"]) and sum("(chosen)" in r[0] for r in rows) == 1
    assert m["eval_command"] in caption

    out = result.models["model"]
    assert out.name == "adas_optimized_model"
    agent = load_agent(out)
    assert agent.extensions["design"] == AgentDesign.from_dict(m["chosen"]["design"])

    report = tmp_path / "eval.json"
    cli = CliRunner().invoke(app, ["eval", str(out), "--method", "generate", "--levels", "1-2", "--n", "3",
                                   "--json", str(report)])
    assert cli.exit_code == 0, cli.output
    evaluated = json.loads(report.read_text())
    assert evaluated["accuracy"] == pytest.approx(m["summary"]["test_chosen"], abs=1e-6)
    assert {d: round(v, 2) for d, v in evaluated["by_domain"].items()} == test["chosen"]["by_domain"]


def test_search_is_deterministic_and_resumes_after_a_kill(entering, tmp_path, monkeypatch):
    straight = _run(entering, tmp_path / "a" / "08-adas")

    calls = {"n": 0}
    original = search_module.ADASystem.evaluate

    def killed(self, entry):
        calls["n"] += 1
        if calls["n"] == 6:  # the seeds are done and saved; killed inside generation 1
            raise KeyboardInterrupt
        return original(self, entry)

    monkeypatch.setattr(search_module.ADASystem, "evaluate", killed)
    with pytest.raises(KeyboardInterrupt):
        _run(entering, tmp_path / "b" / "08-adas")
    monkeypatch.setattr(search_module.ADASystem, "evaluate", original)
    evaluated = []
    monkeypatch.setattr(search_module.ADASystem, "evaluate",
                        lambda self, entry: evaluated.append(entry.name) or original(self, entry))
    resumed = _run(entering, tmp_path / "b" / "08-adas")
    assert not any(name in ("plain", "self_refine") for name in evaluated)  # the seeds were not scored again
    assert _stable(resumed.metrics) == _stable(straight.metrics)


def test_stage_refuses_a_packed_input(entering, tmp_path):
    from agent_forge.errors import ForgeError
    from agent_forge.models.formats.ternary import convert_to_bitlinear

    agent = load_agent(entering)
    convert_to_bitlinear(agent.model, sub_norm=False)
    save_agent(agent, tmp_path / "t", packed=True)
    with pytest.raises(ForgeError, match="packed"):
        _run(tmp_path / "t", tmp_path / "run" / "08-adas")


GOOD_BLOCK = '''def answer(prompt: str, agent) -> str:
    draft = agent.generate(prompt)
    if agent.confidence(prompt, draft) < 0.05:
        draft = agent.generate_many([prompt], temperature=0.7)[0]
    return draft
'''

HOSTILE_BLOCK = '''def answer(prompt: str, agent) -> str:
    open({target!r}, "w").write("escaped")
    import socket
    socket.create_connection(("127.0.0.1", {port}))
    return "pwned"
'''


@pytest.fixture
def scripted_meta_agent(tmp_path):
    """A real chat-completions server on loopback whose every reply proposes one good and one hostile block,
    and a listener the hostile block tries to reach. Yields (endpoint, requests, escape target, listener)."""
    import socket
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    target = tmp_path / "escaped.txt"
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.3)
    reply = "\n".join(["### Design: unsure_resample", "Rationale: resample when unsure.", "```python", GOOD_BLOCK, "```",
                       "### Design: escape", "Rationale: leaves the sandbox.", "```python",
                       HOSTILE_BLOCK.format(target=str(target), port=listener.getsockname()[1]), "```"])
    requests: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            requests.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            data = json.dumps({"id": "c", "object": "chat.completion", "model": "designer", "choices": [
                {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": reply}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", requests, target, listener
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
        listener.close()


def test_meta_agent_blocks_run_sandboxed_and_the_search_goes_on(entering, tmp_path, scripted_meta_agent):
    endpoint, requests, target, listener = scripted_meta_agent
    meta = {"endpoint": endpoint, "model": "designer", "proposals": 2, "cpu_seconds": 20, "wall_seconds": 60}
    result = _run(entering, tmp_path / "run" / "08-adas", max_generations=1, patience=5, meta_agent=meta)
    m = result.metrics
    assert m["meta_agent"] and len(requests) == 1
    # the proposer saw a few selected parents, not the whole archive
    prompt = requests[0]["messages"][-1]["content"]
    assert sum(e["name"] in prompt for e in m["archive"] if e["generation"] == 0) <= 3
    code = {e["name"]: e for e in m["archive"] if e["origin"] == "meta-agent"}
    good = next(e for name, e in code.items() if "unsure_resample" in name)
    hostile = next(e for name, e in code.items() if "escape" in name)
    assert good["error"] is None and good["validation"] is not None
    assert hostile["error"] and hostile["validation"]["mean"] == 0.0  # failed inside the sandbox: no answers
    assert not target.exists()
    with pytest.raises(OSError):  # nothing ever connected
        listener.accept()
    assert any(e["generation"] == 1 and e["origin"] in ("mutation", "crossover") for e in m["archive"])


def test_a_design_certain_to_be_over_budget_is_stopped_early_and_never_chosen(entering, tmp_path):
    agent = load_agent(entering)
    tasks = [t for d in ("arithmetic", "strings") for t in make_tasks(d, 1, "val", 4, 0)]
    votes = AgentDesign(name="votes", votes=3, vote_temperature=0.7)
    plain_scores, plain_tokens, _ = search_module.score_design(agent, AgentDesign(), tasks)
    scores, tokens, _ = search_module.score_design(agent, votes, tasks)
    assert tokens > 2 * plain_tokens
    within = search_module.score_design(agent, votes, tasks, max_tokens_per_answer=tokens)
    assert within[:2] == (scores, tokens)  # a limit the design stays within changes nothing
    stopped, at_least, _ = search_module.score_design(agent, votes, tasks, max_tokens_per_answer=1.5 * plain_tokens)
    assert stopped is None and 1.5 * plain_tokens < at_least <= tokens
    assert search_module.score_design(agent, AgentDesign(), tasks)[:2] == (plain_scores, plain_tokens)

    metrics = _run(entering, tmp_path / "stage", max_cost_ratio=1.5).metrics  # self_consistency (5 votes) is over
    stopped_entries = [e for e in metrics["archive"] if e["stopped_early"]]
    assert any(e["name"] == "self_consistency" for e in stopped_entries)
    assert all(e["validation"] is None and e["over_budget"] and not e["pareto"] for e in stopped_entries)
    assert metrics["chosen"]["name"] not in {e["name"] for e in stopped_entries}
    assert metrics["summary"]["stopped_early"] == len(stopped_entries)
