"""Commands that load a model and use it: `eval` (the task suites) and `chat` (a conversation in the terminal)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

from ..errors import ForgeError
from .app import INTERRUPTED, _choice, _existing_model, _loading_agent, _writable_file, app, parse_levels, parse_names


@app.command("eval")
def eval_command(
    model: str = typer.Argument(..., help="A Hugging Face model folder or a .gguf file."),
    domains: Optional[list[str]] = typer.Option(None, "--domains", "-d", help="Domains (repeat or comma-separate); default all."),
    levels: str = typer.Option("1-10", "--levels", "-l", help="Levels, e.g. 1-4 or 1,3,5."),
    n: int = typer.Option(20, "--n", min=1, help="Tasks per domain and level."),
    split: str = typer.Option("test", "--split", help="train, val or test."),
    method: str = typer.Option("fast", "--method", help="fast (one teacher-forced pass) or generate (decode and verify)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the task streams."),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    dtype: str = typer.Option("auto", "--dtype", help="auto, float32, bfloat16 or float16."),
    threads: int = typer.Option(0, "--threads", min=0, help="torch CPU threads; 0 keeps torch's default."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the results to this JSON file."),
    experts: str = typer.Option("auto", "--experts", help="Expert vectors: auto (dispatch), off, or an expert's name."),
) -> None:
    """Evaluate a model on the task suites and print accuracy by domain and level."""
    from ..tasks import DOMAINS, SPLITS

    _existing_model(model)
    if json_out is not None:
        json_out = _writable_file(json_out, "--json")
    split = _choice(split, tuple(SPLITS), "--split")
    method = _choice(method, ("fast", "generate"), "--method")
    level_list = parse_levels(levels)
    domain_list = parse_names(domains) or list(DOMAINS)
    unknown = [d for d in domain_list if d not in DOMAINS]
    if unknown:
        raise ForgeError(f"unknown domain(s) {', '.join(unknown)}; known: {', '.join(DOMAINS)}")

    from ..evaluation.table import accuracy_grid
    from ..tasks import task_grid
    from ..utils import configure_threads

    configure_threads(threads)
    console = Console()
    try:
        # every extension restored: a BitNet checkpoint is scored ternary, a packed export through its kernel
        agent = _loading_agent(model, device, dtype)
        tasks = task_grid(domain_list, level_list, split, n, seed)
        console.print(f"{model}: {len(tasks)} {split} tasks, method {method}", markup=False)
        report = _evaluate_with_experts(agent, tasks, experts, method=method, batch_size=batch_size, console=console)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(INTERRUPTED) from None

    console.print(accuracy_grid(report.by_domain_level, report.by_domain, level_list))
    loglik = f"; mean answer log-likelihood {report.mean_loglik:.3f}" if method == "fast" else ""
    console.print(f"overall accuracy {report.accuracy:.1f}% over {len(tasks)} tasks{loglik}")
    if json_out is not None:
        from ..utils import atomic_write_json

        summary: dict[str, Any] = {
            "model": model, "split": split, "method": method, "n_per_level": n, "seed": seed,
            "domains": domain_list, "levels": level_list, **report.to_dict(),
        }
        atomic_write_json(json_out, summary)
        console.print(f"wrote {json_out}", markup=False)


def _set_experts(agent, mode: str):
    """The agent's expert set with `--experts` applied (None when the agent has none or mode is off)."""
    found = agent.extensions.get("experts")
    if found is None:
        if mode not in ("auto", "off"):
            raise ForgeError(f"--experts {mode}: this model has no expert vectors")
        return None
    if mode not in ("auto", "off") and mode not in found.experts:
        raise ForgeError(f"--experts: no expert named {mode!r}; this model has {', '.join(sorted(found.experts))}")
    found.mode = mode
    return found


def _evaluate_with_experts(agent, tasks, mode: str, *, method: str, batch_size: int, console):
    """`evaluate_agent` with `--experts` applied; says how dispatch split the tasks."""
    from ..evaluation import evaluate_agent
    from ..evaluation.report import dispatch_groups

    if _set_experts(agent, mode) is not None and mode != "off":
        groups = dispatch_groups(agent, [t.prompt for t in tasks])
        if groups is not None:
            console.print("experts: " + ", ".join(f"{k or 'base'} {len(v)}" for k, v in groups[1].items()), markup=False)
    return evaluate_agent(agent, tasks, method=method, batch_size=batch_size)


# ----------------------------------------------------------------------------------------------------- chat


def _strip_special(text: str, tokenizer, keep: tuple[str, ...]) -> str:
    for token in getattr(tokenizer, "all_special_tokens", []):
        if token and token not in keep:
            text = text.replace(token, "")
    return text


def render_reply(reply, agent, show_thoughts: bool) -> Any:
    """A reply as rich text: thoughts dimmed (when shown), special tokens removed, never an empty line."""
    from rich.text import Text

    from ..inference import split_thoughts

    shown = Text()
    if agent.thinks:
        shown.append(reply.text)
        if show_thoughts and reply.thoughts:
            shown.append("  [thoughts: " + " | ".join(t.strip() for t in reply.thoughts) + "]", style="dim italic")
    else:
        # a model without a head may still write delimiter spans of its own: show them as thoughts
        from ..models.formats.thoughts import END_OF_THOUGHT, START_OF_THOUGHT

        text = _strip_special(reply.text, agent.tokenizer, keep=(START_OF_THOUGHT, END_OF_THOUGHT))
        for piece, is_thought in split_thoughts(text):
            if not is_thought:
                shown.append(piece)
            elif show_thoughts:
                shown.append(f"[thought: {piece.strip()}] ", style="dim italic")
    if not shown.plain.strip():
        shown = Text("(empty reply)", style="dim")  # the model ended its turn at once; say so rather than print nothing
    return shown


def _stdin_is_terminal() -> bool:
    return sys.stdin.isatty()


def example_prompts(tokenizer=None, seed: int = 0) -> dict[str, str]:
    """One level-1 training prompt per task domain (`agent_forge.tasks.DOMAINS`), as a user would type it.

    With a tokenizer, a domain whose example it cannot spell (characters outside a character-level
    vocabulary) is left out.
    """
    from ..tasks import DOMAINS, make_tasks

    unknown = getattr(tokenizer, "unk_token_id", None) if tokenizer is not None else None
    examples = {}
    for domain in DOMAINS:
        prompt = make_tasks(domain, 1, "train", 1, seed)[0].prompt
        if unknown is not None and unknown in tokenizer(prompt, add_special_tokens=False)["input_ids"]:
            continue
        examples[domain] = prompt
    return examples


@app.command()
def chat(
    model: str = typer.Argument(..., help="A Hugging Face model folder or a .gguf file."),
    prompt: Optional[str] = typer.Option(None, "--prompt", "-p", help="Answer this one prompt and exit."),
    show_thoughts: bool = typer.Option(False, "--show-thoughts", help="Also print the model's thought spans."),
    max_new_tokens: int = typer.Option(128, "--max-new-tokens", min=1),
    temperature: float = typer.Option(0.0, "--temperature", min=0.0, help="0 is greedy."),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("auto", "--device"),
    dtype: str = typer.Option("auto", "--dtype"),
    threads: int = typer.Option(0, "--threads", min=0, help="torch CPU threads; 0 keeps torch's default."),
    experts: str = typer.Option("auto", "--experts", help="Expert vectors: auto (dispatch), off, or an expert's name."),
) -> None:
    """Talk to a model: one reply per line typed (each line is answered on its own); /exit or EOF quits.

    On start it shows one example prompt per task domain: the formats the forged models were trained on.
    """
    from ..inference import answer
    from ..utils import configure_threads

    _existing_model(model)
    configure_threads(threads)
    agent = _loading_agent(model, device, dtype)
    expert_set = _set_experts(agent, experts)

    def reply(text: str):
        # raw text (special tokens kept) so that delimiter spans of a model without a head can be shown
        result = answer(agent, [text], max_new_tokens=max_new_tokens, temperature=temperature, seed=seed, batch_size=1,
                        keep_special_tokens=True)
        shown = render_reply(result[0], agent, show_thoughts)
        if expert_set is not None and expert_set.last:
            c = expert_set.last[0]
            shown.append(f"  [expert: {c.expert or 'base'}, confidence {c.confidence:.2f}]", style="dim")
        return shown

    console = Console(highlight=False)
    if prompt is not None:
        console.print(reply(prompt))
        return
    interactive = _stdin_is_terminal()
    if interactive:
        console.print(f"chatting with {model}; /exit or Ctrl-D to quit", markup=False)
        console.print("prompts it understands (one per task domain):", markup=False)
        for domain, example in example_prompts(agent.tokenizer).items():
            console.print(f"  {domain:<11} {example}", markup=False)
    try:
        while True:
            if interactive:
                console.print("[bold]you>[/] ", end="")
            line = sys.stdin.readline()
            if not line:
                break
            text = line.strip()
            if text in {"/exit", "/quit"}:
                break
            if text:
                console.print(reply(text))
    except KeyboardInterrupt:
        console.print()

