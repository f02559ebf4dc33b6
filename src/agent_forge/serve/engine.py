"""The batching engine: one thread owns the model; requests join and leave a shared batch between decode steps.

Requests arrive as `Sequence`s (one per answer: a request with `n=3` brings three) in a queue. The engine
thread loops:

1. admit waiting sequences while the batch has room (`max_batch` rows): prefill them together (left-padded,
   position ids counting real tokens only), sample each one's first token from the prefill logits, and write
   their keys and values into free slots of the running batch's cache (`batch.BatchState.join`, zero
   left-padding to the common length);
2. run one decode step for every row at once (each row feeds the token it sampled last; the attention mask
   hides each row's padding), choose each row's next token (greedy, or sampled with the row's own seeded
   generator, `sampling.py`), turn it into streamable text (`textstream.py`) and send the text to the request;
3. drop the rows that finished (terminator, stop string, `max_tokens`) or were cancelled (client gone, request
   timed out) from the cache and the batch, and go on.

So a request that arrives while others are decoding joins within a few steps, and a short answer leaves
without waiting for long ones. Each row's keys and values are its own slot of the batched cache; a greedy row
computes what `agent_forge.models.generate` computes for its prompt alone (padding is masked and positions skip
it), token for token (tested). Decode steps run under `torch.inference_mode` with a ready 4-D additive mask
(`_decode_mask`), about a tenth faster per 32-row step of the tiny model than no_grad and transformers' own mask.

Thinking agents: a request that thinks (a Quiet-STaR head, and the request did not say `think: false`) is
answered by `agent_forge.inference.answer` in its own micro-batch (waiting thinking requests with the same
sampling settings together, up to `max_batch`), between decode steps of the shared batch, which pauses for it:
thinking inserts and removes a thought before every answer token, which does not fit a shared step. The same
path serves every request of an agent whose extensions act at answer time (expert dispatch, tool execution:
`inference.agent_hooks`; an ADAS agent design), so those hooks run exactly as in `chat` and `eval`. Their text arrives in one piece,
`top_p` does not apply there, and their completion-token count is that of the answer text re-encoded.

Admission: a prefill costs about one decode step whatever its size, so while a batch is running, newcomers are
gathered for up to `coalesce_s` (20 ms) unless they would fill the free rows anyway; an idle engine admits at
once. In the 32-client load test (HTTP) this halved the number of prefills.

Each finished answer says how sure the model was: `Event.confidence` is the router's confidence when an
expert dispatch chose the weights (`Event.expert` names the expert), else, on the shared-batch path, the
geometric mean probability of the tokens it emitted (under the untempered distribution); the thinking/hooks
path without experts reports none.

Events go back through each sequence's `sink` (the server passes `loop.call_soon_threadsafe`). The engine never
raises into a request: a failed step ends the affected sequences with an error event and the engine goes on.

Hot swap (`retire(successor)`): when the server moves to a new model version, the old engine finishes what it
holds (queued and running sequences), then its thread exits at the top of its loop, where nothing is half
admitted, and every later `submit`/`cancel` is forwarded to the successor (a request that took the old engine
just before the swap). So no request fails or is cut off by a swap. `Sequence.served_version` names the
version whose weights answered it (the engine's `version`, set when it is admitted).

Exercise: `pytest tests/serve/test_engine.py`.
"""

from __future__ import annotations

import inspect
import logging
import math
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence as Seq

import torch
from ..inference import agent_hooks, answer
from ..models import Agent, pad_id, prompt_format
from .batch import BatchState, new_cache
from .sampling import choose_tokens, row_generator
from .textstream import TextStream

log = logging.getLogger("agent_forge.serve")


@dataclass(frozen=True)
class SamplingParams:
    """How one answer is generated."""

    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    think: bool = False  # answer through `inference.answer` with thoughts (only for an agent that thinks)
    hold_from: str | None = None  # never stream text from this marker on (tool calls)


@dataclass
class Event:
    """What the engine tells a request: text to send (`delta`), an answer finished (`done`), or `error`."""

    kind: str
    index: int
    text: str = ""
    thoughts: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    completion_tokens: int = 0
    full_text: str = ""
    error: str | None = None
    expert: str | None = None  # the expert whose weights answered (expert dispatch), if any
    confidence: float | None = None  # see the module doc


class Sequence:
    """One answer being generated: one choice of one request."""

    def __init__(self, prompt_ids: Seq[int], params: SamplingParams, *, index: int = 0,
                 sink: Callable[[Event], Any], tokenizer, prompt_text: str | None = None, streaming: bool = True):
        self.prompt_ids = list(prompt_ids)
        self.prompt_text = prompt_text
        self.params = params
        self.index = index
        self.sink = sink
        self.streaming = streaming  # False: no `delta` events, the text comes with `done` only
        self.generated: list[int] = []
        self.queued_at = 0.0  # time.monotonic() when submitted
        self.first_token_at: float | None = None  # time.monotonic() when its first token was chosen
        self.stream = TextStream(tokenizer, params.stop, params.hold_from, incremental=streaming)
        self.generator = row_generator(params.seed) if params.temperature > 0 else None
        self.cancelled = False
        self.finished = False
        self.served_version: str | None = None  # the engine's version when it was admitted (see the module doc)
        self.logprob_sum = 0.0  # log-probabilities of the emitted tokens, for the answer's confidence

    def emit(self, event: Event) -> None:
        try:
            self.sink(event)
        except Exception:  # the request's event loop is gone (server shutting down): nobody is listening
            self.cancelled = True


@dataclass
class EngineStats:
    """Counters for /metrics, tests and benchmarks: decode steps, rows decoded, prefills, widest batch, tokens."""

    steps: int = 0
    rows: int = 0  # summed over steps: rows / steps is the mean batch size
    prefills: int = 0
    max_rows: int = 0
    tokens: int = 0


class Engine:
    """Owns `agent.model` in one thread and serves `Sequence`s submitted from any thread."""

    def __init__(self, agent: Agent, *, max_batch: int = 32, coalesce_s: float = 0.02, version: str | None = None):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.agent = agent
        self.version = version
        self.model = agent.model
        self.tokenizer = agent.tokenizer
        self.max_batch = max_batch
        self.coalesce_s = coalesce_s
        self.fmt = prompt_format(agent.tokenizer)
        self.stop_ids = set(self.fmt.stop_ids)
        self.pad_id = pad_id(agent.tokenizer)
        self.device = next(self.model.parameters()).device
        suppress = getattr(getattr(self.model, "generation_config", None), "suppress_tokens", None)
        self.suppressed = torch.tensor(sorted(set(suppress)), dtype=torch.long, device=self.device) if suppress else None
        params = inspect.signature(self.model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self._last_logits = next(({k: 1} for k in ("logits_to_keep", "num_logits_to_keep") if k in params), {})
        # an agent design (ADAS) answers through `inference.answer` too: votes, refinement, tool policy
        self.hooks_at_answer_time = bool(agent_hooks(agent)) or "design" in agent.extensions
        embeddings = self.model.get_input_embeddings()
        self._dtype = embeddings.weight.dtype if embeddings is not None else torch.float32
        # transformers >= 5 (masking_utils) uses a ready 4-D mask as it is; older versions get the 2-D one
        self._mask_4d = _accepts_4d_masks()
        self.stats = EngineStats()
        self._queue: deque[Sequence] = deque()
        self._answering = 0
        self._batch = BatchState(max_batch)
        self._cond = threading.Condition()
        self._paused = False
        self._stopping = False
        self._successor: Engine | None = None  # set by `retire`: where submissions go once drained
        self._retired = False  # drained and stopped; submit/cancel forward to the successor
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------------------------ control

    @property
    def waiting(self) -> int:
        """Sequences queued, not yet in the batch."""
        return len(self._queue)

    @property
    def running(self) -> int:
        """Sequences being decoded (in the shared batch or a thinking micro-batch)."""
        return len(self._batch) + self._answering

    def start(self) -> "Engine":
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="agent-forge-engine", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread; sequences still queued or running end with an error event."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        for seq in list(self._queue) + list(self._batch.items):
            self._fail(seq, "the server is shutting down")
        self._queue.clear()
        self._batch.clear()

    def submit(self, sequences: Seq[Sequence]) -> None:
        now = time.monotonic()
        for seq in sequences:
            seq.queued_at = now
        with self._cond:
            if not self._retired:
                self._queue.extend(sequences)
                self._cond.notify_all()
                return
        self._successor.submit(sequences)  # this engine was swapped out and has drained (module doc)

    def cancel(self, sequences: Seq[Sequence]) -> None:
        """Stop working on these sequences (they leave the batch at the next step; no more events)."""
        for seq in sequences:
            seq.cancelled = True
        with self._cond:
            self._cond.notify_all()
            successor = self._successor if self._retired else None
        if successor is not None:
            successor.cancel(sequences)

    def retire(self, successor: "Engine", timeout: float | None = None) -> bool:
        """Finish the sequences this engine holds, then stop and forward new ones to `successor`.

        Returns True once drained (False if `timeout` seconds passed first; the engine keeps draining).
        """
        with self._cond:
            self._successor = successor
            self._cond.notify_all()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                return False
        with self._cond:
            self._retired = True  # also for an engine that never started
        return True

    def pause(self) -> None:
        """Hold every request where it is (queued or in the batch) until `resume`; for tests and maintenance."""
        with self._cond:
            self._paused = True

    def resume(self) -> None:
        with self._cond:
            self._paused = False
            self._cond.notify_all()

    # --------------------------------------------------------------------------------------------- loop

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and (self._paused or not (self._queue or self._batch.items)):
                    if self._successor is not None and not self._queue and not self._batch.items:
                        self._retired = True  # drained at the top of the loop: nothing is half admitted
                        self._cond.notify_all()
                        return
                    self._cond.wait()
                if self._stopping:
                    return
                newcomers = []
                if self._admit_now():
                    while self._queue and len(self._batch) + len(newcomers) < self.max_batch:
                        seq = self._queue.popleft()
                        if not seq.cancelled:
                            seq.served_version = self.version
                            newcomers.append(seq)
            try:
                with torch.inference_mode():  # cheaper than no_grad per op; nothing here is ever trained
                    self._drop_cancelled()
                    if newcomers:
                        self._admit(newcomers)
                    if self._batch.items:
                        self._step()
            except Exception as exc:  # keep serving: fail what was in flight, start from an empty batch
                log.exception("decode step failed")
                for seq in newcomers + list(self._batch.items):
                    self._fail(seq, f"generation failed: {type(exc).__name__}: {exc}")
                self._batch.clear()

    def _admit_now(self) -> bool:
        """Whether to prefill the waiting sequences before this step (called under the lock).

        A prefill costs about one decode step whatever its size, so while a batch is running, newcomers are
        gathered until they would fill the free rows or the first has waited `coalesce_s`; an idle engine
        admits at once.
        """
        if not self._queue:
            return False
        free = self.max_batch - len(self._batch)
        if not self._batch.items:
            return True
        if free <= 0:
            return False
        return len(self._queue) >= free or time.monotonic() - self._queue[0].queued_at >= self.coalesce_s

    def _admit(self, sequences: list[Sequence]) -> None:
        thinking = [s for s in sequences if s.params.think or self.hooks_at_answer_time]
        plain = [s for s in sequences if not (s.params.think or self.hooks_at_answer_time)]
        if plain:
            self._prefill(plain)
        if thinking:
            self._answer(thinking)

    def _prefill(self, sequences: list[Sequence]) -> None:
        width = max(len(s.prompt_ids) for s in sequences)
        input_ids = torch.full((len(sequences), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, seq in enumerate(sequences):
            input_ids[row, width - len(seq.prompt_ids):] = torch.tensor(seq.prompt_ids, dtype=torch.long)
            mask[row, width - len(seq.prompt_ids):] = 1
        input_ids, mask = input_ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = new_cache()
        out = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True,
                         **{self._cache_kw: cache}, **self._last_logits)
        cache = _cache_of(out, cache)
        tokens, logprobs = self._choose(out.logits[:, -1], sequences)
        self.stats.prefills += 1
        going = [row for row, (seq, token, lp) in enumerate(zip(sequences, tokens, logprobs))
                 if self._advance(seq, token, lp)]
        if not going:
            return
        index = torch.tensor(going, dtype=torch.long, device=self.device)
        if len(going) < len(sequences):
            cache.batch_select_indices(index)  # a plain DynamicCache: those rows are copied into slots next
        self._batch.join(
            cache, mask[index], positions[index, -1:] + 1, torch.tensor(tokens, device=self.device)[index],
            [sequences[row] for row in going],
        )

    def _step(self) -> None:
        batch = self._batch
        batch.mask = torch.cat([batch.mask, batch.mask.new_ones((len(batch), 1))], dim=1)
        out = self.model(input_ids=batch.last_tokens[:, None], attention_mask=self._decode_mask(batch.mask),
                         position_ids=batch.next_position, use_cache=True, **{self._cache_kw: batch.cache})
        batch.cache = _cache_of(out, batch.cache)
        batch.next_position = batch.next_position + 1
        tokens, logprobs = self._choose(out.logits[:, -1], batch.items)
        self.stats.steps += 1
        self.stats.rows += len(batch)
        self.stats.max_rows = max(self.stats.max_rows, len(batch))
        going = [row for row, (seq, token, lp) in enumerate(zip(batch.items, tokens, logprobs))
                 if self._advance(seq, token, lp)]
        batch.last_tokens = torch.tensor(tokens, dtype=torch.long, device=self.device)
        batch.keep(going)

    def _decode_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """The (rows, 1, 1, length) additive mask of a one-token step, which the model uses as it is.

        Building it here skips the model's own mask construction each step, and attention is faster with an
        additive float mask than with the boolean one transformers builds (about a tenth of a 32-row step).
        """
        if not self._mask_4d:
            return mask
        return torch.zeros(mask.shape, dtype=self._dtype, device=mask.device).masked_fill_(
            mask == 0, torch.finfo(self._dtype).min)[:, None, None, :]

    def _choose(self, logits: torch.Tensor, sequences: Seq[Sequence]) -> tuple[list[int], list[float]]:
        """Each row's next token, and its log-probability under the untempered distribution."""
        if self.suppressed is not None:
            # e.g. Quiet-STaR's thought delimiters: never emitted as text (as models.generate does)
            logits = logits.index_fill(-1, self.suppressed, float("-inf"))
        tokens = choose_tokens(
            logits, [s.params.temperature for s in sequences], [s.params.top_p for s in sequences],
            [s.generator for s in sequences],
        )
        chosen = torch.tensor(tokens, dtype=torch.long, device=logits.device)[:, None]
        logprobs = (logits.float().gather(-1, chosen)[:, 0] - torch.logsumexp(logits.float(), dim=-1)).tolist()
        return tokens, logprobs

    def _advance(self, seq: Sequence, token: int, logprob: float = 0.0) -> bool:
        """Record one generated token; False when the sequence is finished (or cancelled) and leaves."""
        if seq.cancelled:
            seq.finished = True
            return False
        seq.generated.append(token)
        seq.logprob_sum += logprob
        if seq.first_token_at is None:
            seq.first_token_at = time.monotonic()
        self.stats.tokens += 1
        if token in self.stop_ids:
            self._finish(seq, "stop")
            return False
        delta, stopped = seq.stream.push(token)
        if delta and seq.streaming:
            seq.emit(Event("delta", seq.index, text=delta))
        if stopped:
            self._finish(seq, "stop")
            return False
        if len(seq.generated) >= seq.params.max_tokens:
            self._finish(seq, "length")
            return False
        return True

    def _finish(self, seq: Sequence, reason: str) -> None:
        rest = seq.stream.finish()
        if rest and seq.streaming:
            seq.emit(Event("delta", seq.index, text=rest))
        seq.finished = True
        confidence = math.exp(seq.logprob_sum / len(seq.generated)) if seq.generated else None
        seq.emit(Event("done", seq.index, finish_reason=reason, completion_tokens=len(seq.generated),
                       full_text=seq.stream.text, confidence=confidence))

    def _fail(self, seq: Sequence, message: str) -> None:
        if not seq.finished:
            seq.finished = True
            seq.emit(Event("error", seq.index, error=message))

    def _drop_cancelled(self) -> None:
        items = self._batch.items
        if any(s.cancelled for s in items):
            self._batch.keep([row for row, s in enumerate(items) if not s.cancelled])

    # -------------------------------------------------------------------------- thinking / hooks path

    def _answer(self, sequences: list[Sequence]) -> None:
        groups: dict[tuple, list[Sequence]] = {}
        for seq in sequences:
            p = seq.params
            seed = p.seed if p.seed is not None else secrets.randbits(31)
            groups.setdefault((p.max_tokens, p.temperature, seed, p.stop, p.think), []).append(seq)
        for (max_tokens, temperature, seed, stop, think), group in groups.items():
            self._answering = len(group)
            try:
                texts = [s.prompt_text if s.prompt_text is not None else self.tokenizer.decode(s.prompt_ids)
                         for s in group]
                replies = answer(self.agent, texts, max_new_tokens=max_tokens, temperature=temperature, seed=seed,
                                 think=think, batch_size=self.max_batch, stop=list(stop) or None, render=False)
            except Exception as exc:  # only this micro-batch fails; the shared batch goes on
                log.exception("answering failed")
                for seq in group:
                    self._fail(seq, f"generation failed: {type(exc).__name__}: {exc}")
                continue
            finally:
                self._answering = 0
            choices = _expert_choices(self.agent, len(group))
            for seq, reply, choice in zip(group, replies, choices):
                if seq.cancelled:
                    continue
                seq.first_token_at = time.monotonic()
                count = len(self.tokenizer(reply.text, add_special_tokens=False)["input_ids"])
                marker = seq.params.hold_from
                visible = reply.text[: reply.text.index(marker)] if marker and marker in reply.text else reply.text
                seq.stream.text = reply.text
                self.stats.tokens += count
                if seq.streaming and (visible or reply.thoughts):
                    seq.emit(Event("delta", seq.index, text=visible, thoughts=list(reply.thoughts)))
                seq.finished = True
                seq.emit(Event("done", seq.index, finish_reason="length" if count >= max_tokens else "stop",
                               completion_tokens=count, full_text=reply.text, thoughts=list(reply.thoughts),
                               expert=choice[0], confidence=choice[1]))


def _expert_choices(agent: Agent, n: int) -> list[tuple[str | None, float | None]]:
    """(expert, router confidence) per prompt of the micro-batch just answered, from the dispatch hook."""
    experts = agent.extensions.get("experts")
    last = list(getattr(experts, "last", None) or [])
    if experts is None or getattr(experts, "mode", "auto") != "auto" or len(last) != n:
        return [(None, None)] * n  # no router decided (no experts, a fixed expert, or dispatch off)
    return [(c.expert, float(c.confidence)) for c in last]


def _accepts_4d_masks() -> bool:
    try:
        from transformers.masking_utils import create_causal_mask  # noqa: F401
    except ImportError:  # pragma: no cover
        return False
    return True


def _cache_of(output, fallback):
    cache = getattr(output, "cache", None)
    if cache is None:
        cache = getattr(output, "past_key_values", None)
    return cache if cache is not None else fallback
