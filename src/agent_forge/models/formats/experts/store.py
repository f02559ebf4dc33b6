"""Expert vectors as an agent extension: the files beside the model, the prompt router, and the dispatch hook.

Files (all under `experts/` in the agent folder):

* `experts.json` — format, the matrices, `max_mult`, expert names, the router's classes and threshold, and a
  digest of the matrices the SVD belongs to;
* `svd.safetensors` — the cached decomposition (U, S, V per matrix), recomputed on load if the model's
  weights no longer match its digest; beside a packed export only the top `packed_rank` columns of U and V
  (and the whole S), what option (b)'s rank-r correction needs (`lowrank`);
* `expert-<name>.safetensors` — one z vector per matrix (the expert itself: a few KB);
* `router.safetensors` — the prompt classifier (logistic regression on the mean-pooled last hidden state of
  the base model), when the experts stage trained one;
* `classifier.safetensors` — the classification vector with which the agent answers "domain of: <prompt>"
  itself (dispatch mode 1, `classify`); `experts.json` names its classes and which mode dispatches
  (`dispatch`: "self" or "router"); `policy` holds the thresholds of the confidence policy when the experts
  stage kept one (`policy.ConfidencePolicy`; absent in older folders: the router threshold decides).

`ExpertSet` is what `load_agent` puts in `agent.extensions["experts"]`. It is also the answer-time hook
(`context(agent, prompts)`): it routes the prompts and holds the chosen expert while they are answered. On
latent weights it holds it as `application` (in `experts.json`) says: "weights" writes W' into them and copies
the originals back afterwards; "correction" adds U diag(S (z c - 1)) V^T beside each layer in full precision
(forward hooks, removed afterwards). A packed agent (no latent weights) always takes the correction, at rank r.
`mode` is "auto" (route; below the confidence threshold the base weights answer), "off", an expert's name, or
a mixture key ("mix:a=0.62,b=0.38").

With a `policy`, auto mode lets the agent's self-confidence decide (`policy.py`): each prompt's confidence
that its base-weights answer is right (`inference.confidence.predict_confidence`, on the base weights) and the
dispatch classifier's class probabilities give the base weights, the top class's expert or a mixture of the
experts weighted by the probabilities (`Choice.kind`: "base", "expert" or "mixture").
"""

from __future__ import annotations

import hashlib
import json
import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ....errors import ForgeError
from ....utils import atomic_write_bytes, atomic_write_text
from ..thoughts.checkpoint import reproducible_safetensors
from ..ternary.packed import is_packed_export
from .classify import TEMPLATE, SelfClassifier
from .lowrank import APPLICATIONS, held, truncate
from .policy import MIX, ConfidencePolicy, vector
from .svf import Decomposition, decompose_model

FOLDER = "experts"
INDEX = "experts.json"
SVD_FILE = "svd.safetensors"
ROUTER_FILE = "router.safetensors"
CLASSIFIER_FILE = "classifier.safetensors"
DISPATCH_MODES = ("router", "self")
FORMAT = "agent_forge.experts/1"
log = logging.getLogger("agent_forge.experts")


def weight_digest(model: torch.nn.Module, names: Sequence[str]) -> str:
    """sha256 of the chosen matrices' bytes (float32): which weights a cached SVD belongs to."""
    params = dict(model.named_parameters())
    h = hashlib.sha256()
    for n in names:
        h.update(n.encode())
        h.update(params[n].detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def save_decomposition(decomposition: Mapping[str, Decomposition], path: Path, digest: str) -> None:
    tensors = {}
    for n, d in decomposition.items():
        tensors[f"{n}.U"], tensors[f"{n}.S"], tensors[f"{n}.V"] = (t.detach().cpu().contiguous() for t in (d.U, d.S, d.V))
    kept = max((d.kept for d in decomposition.values()), default=0)
    full = all(d.kept == d.rank for d in decomposition.values())
    atomic_write_bytes(path, reproducible_safetensors(
        tensors, {"format": FORMAT, "weights": digest, "kept": "all" if full else str(kept)}))


def load_decomposition(path: Path, names: Sequence[str]) -> tuple[dict[str, Decomposition], str]:
    """(decomposition, digest of the weights it was computed from); ForgeError if damaged or incomplete."""
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
        tensors = load_file(str(path))
        return {n: Decomposition(tensors[f"{n}.U"], tensors[f"{n}.S"], tensors[f"{n}.V"]) for n in names}, meta.get("weights", "")
    except (SafetensorError, OSError, KeyError, ValueError) as exc:
        raise ForgeError(f"corrupted SVD cache {path}: {exc}") from None


def cached_decomposition(model: torch.nn.Module, names: Sequence[str], path: Path | None) -> dict[str, Decomposition]:
    """The decomposition of the model's current matrices: read from `path` if it matches them, else computed
    (and written to `path`)."""
    digest = weight_digest(model, names)
    if path is not None and path.is_file():
        try:
            found, stored = load_decomposition(path, names)
            if stored == digest:
                return found
            log.info("SVD cache %s belongs to other weights; recomputing", path)
        except ForgeError as exc:
            log.warning("%s; recomputing", exc)
    decomposition = decompose_model(model, names)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_decomposition(decomposition, path, digest)
    return decomposition


@dataclass
class Router:
    """Multinomial logistic regression on the base model's mean-pooled last hidden state of a rendered prompt."""

    classes: list[str]
    weight: torch.Tensor  # [classes, hidden]
    bias: torch.Tensor  # [classes]
    mean: torch.Tensor  # [hidden] feature standardisation
    std: torch.Tensor

    def probabilities(self, features: torch.Tensor) -> torch.Tensor:
        x = (features.float().cpu() - self.mean) / self.std
        return torch.softmax(x @ self.weight.T + self.bias, dim=-1)

    @classmethod
    def fit(cls, features: torch.Tensor, labels: Sequence[int], classes: list[str], *, l2: float = 1e-3,
            steps: int = 200) -> "Router":
        """Fit by full-batch L-BFGS (deterministic) with a small L2 penalty."""
        x = features.float().cpu()
        mean, std = x.mean(0), x.std(0).clamp_min(1e-4)
        x = (x - mean) / std
        y = torch.tensor(list(labels), dtype=torch.long)
        w = torch.zeros(len(classes), x.shape[1], requires_grad=True)
        b = torch.zeros(len(classes), requires_grad=True)
        opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(x @ w.T + b, y) + l2 * (w**2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        return cls(list(classes), w.detach(), b.detach(), mean, std)


@torch.no_grad()
def prompt_features(model, tokenizer, prompts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
    """Mean-pooled last hidden state of each rendered prompt (right padding, padding masked out)."""
    from ...prompting import pad_id, prompt_format

    fmt = prompt_format(tokenizer)
    ids = fmt.encode_prompts([p if p else " " for p in prompts])
    device = next(model.parameters()).device
    limit = getattr(model.config, "max_position_embeddings", 4096) or 4096
    out = []
    was_training = model.training
    model.eval()
    for start in range(0, len(ids), batch_size):
        rows = [r[-limit:] or [pad_id(tokenizer)] for r in ids[start : start + batch_size]]
        width = max(len(r) for r in rows)
        x = torch.full((len(rows), width), pad_id(tokenizer), dtype=torch.long)
        mask = torch.zeros_like(x)
        for i, r in enumerate(rows):
            x[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        hidden = model(input_ids=x.to(device), attention_mask=mask.to(device), output_hidden_states=True).hidden_states[-1]
        m = mask.to(device).unsqueeze(-1).to(hidden.dtype)
        out.append(((hidden * m).sum(1) / m.sum(1).clamp_min(1)).float().cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, model.config.hidden_size)


def decision_kind(expert: str | None) -> str:
    """"base" (None), "mixture" (a mixture key) or "expert" (an expert's name)."""
    if expert is None:
        return "base"
    return "mixture" if expert.startswith(MIX) else "expert"


@dataclass
class Choice:
    """Which weights answer a prompt: an expert's name, a mixture key or None (base), and the router's
    confidence (its top class probability)."""

    expert: str | None
    confidence: float
    predicted: str | None = None  # the router's top class, even when the threshold sent it to the base
    kind: str = ""  # "base", "expert" or "mixture" (filled in from `expert` when not given)
    self_confidence: float | None = None  # the self-model's P(right) of the base answer, when a policy decided

    def __post_init__(self):
        if not self.kind:
            self.kind = decision_kind(self.expert)


@dataclass
class ExpertSet:
    """The experts of an agent (z vectors over a cached SVD) and how prompts are dispatched to them."""

    names: list[str]
    decomposition: dict[str, Decomposition]
    experts: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    max_mult: float = 1.0
    router: Router | None = None
    threshold: float = 0.0
    packed_rank: int | None = None  # singular directions a packed save keeps (None: all)
    classifier: SelfClassifier | None = None  # dispatch mode 1: the agent answers "domain of: <prompt>"
    dispatch: str = "router"  # which classifier routes in auto mode: "router" (hidden states) or "self"
    mode: str = "auto"  # runtime setting: auto | off | <expert name> | <mixture key>
    policy: ConfidencePolicy | None = None  # the self-confidence decides in auto mode (None: the threshold)
    application: str = "weights"  # on latent weights: "weights" (W' written in) or "correction" (beside them)
    last: list[Choice] = field(default_factory=list)

    # --- dispatch -------------------------------------------------------------------------------
    def route(self, agent, prompts: Sequence[str]) -> list[Choice]:
        """The weights each prompt goes to under the current mode (None: the base weights; an expert's name;
        a mixture key)."""
        if self.mode == "off" or not self.experts:
            return [Choice(None, 1.0) for _ in prompts]
        if self.mode != "auto":
            vector(self.mode, self.experts)  # ForgeError for an unknown name or a malformed mixture key
            return [Choice(self.mode, 1.0, self.mode) for _ in prompts]
        found = self.probabilities(agent, prompts) if prompts else None
        if found is None:
            return [Choice(None, 0.0) for _ in prompts]
        classes, probs = found
        if self.policy is not None:
            return self._decide(agent, prompts, classes, probs)
        out = []
        for row in probs:
            k = int(row.argmax())
            name, conf = classes[k], float(row[k])
            expert = name if conf >= self.threshold and name in self.experts else None
            out.append(Choice(expert, conf, name))
        return out

    def self_confidence(self, agent, prompts: Sequence[str]) -> list[float]:
        """The self-model's confidence that each prompt's base-weights answer is right."""
        # an inference-layer function, imported when called (the inference layer imports this package)
        from ....inference.confidence import predict_confidence

        return predict_confidence(agent.model, agent.tokenizer, list(prompts))

    def _decide(self, agent, prompts, classes: list[str], probs: torch.Tensor) -> list[Choice]:
        out = []
        for row, conf in zip(probs, self.self_confidence(agent, prompts)):
            k = int(row.argmax())
            key = self.policy.decide(classes, row, conf, self.experts)
            out.append(Choice(key, float(row[k]), classes[k], self_confidence=float(conf)))
        return out

    def probabilities(self, agent, prompts: Sequence[str]) -> tuple[list[str], torch.Tensor] | None:
        """(classes, [prompts, classes] probabilities) from the dispatch mode in use: the agent's own answer to
        the classification prompt ("self", under its classification vector) or the hidden-state router; None
        when this agent has neither."""
        if self.dispatch == "self" and self.classifier is not None and self.can_dispatch(agent):
            with self._holding(agent.model, self.classifier.z):
                probs = self.classifier.probabilities(agent.model, agent.tokenizer, list(prompts))
            return list(self.classifier.classes), probs
        if self.router is not None:
            return list(self.router.classes), self.router.probabilities(
                prompt_features(agent.model, agent.tokenizer, list(prompts)))
        return None

    def can_dispatch(self, agent) -> bool:
        """Whether experts can be applied to this agent (a packed bundle of an old format has no SVD factors)."""
        return bool(self.decomposition) or not getattr(agent, "packed", False)

    @contextmanager
    def using(self, model, expert: str | None) -> Iterator[None]:
        """Hold one expert or mixture key (None: no change) while the block runs. With latent weights: as
        `application` says (W' in the weights, originals restored exactly; or corrections beside the layers);
        without (a packed model): rank-r corrections beside the layers, removed. ForgeError for an unknown name
        or a malformed mixture key."""
        if expert is None:
            yield
            return
        with self._holding(model, vector(expert, self.experts)):
            yield

    @contextmanager
    def _holding(self, model, z: Mapping[str, torch.Tensor]) -> Iterator[None]:
        if not self.decomposition:
            raise ForgeError("these experts carry no SVD factors (a packed bundle written before option (b)); "
                             "they cannot be applied")
        params = dict(model.named_parameters())
        latent = all(n in params for n in self.names)
        with held(model, self.decomposition, z, self.application if latent else "correction"):
            yield

    @contextmanager
    def context(self, agent, prompts: Sequence[str]) -> Iterator[list[Choice]]:
        """The answer-time hook: route, apply the chosen expert while answering, restore.

        A batch whose prompts route to different experts (or mixtures) is answered with the base weights (callers that
        batch mixed prompts group them by `route` first); a packed agent applies the expert as a rank-r
        correction beside its packed layers (an old packed bundle without SVD factors: base weights).
        """
        choices = self.route(agent, prompts) if self.can_dispatch(agent) else [Choice(None, 0.0)] * len(prompts)
        self.last = choices
        chosen = {c.expert for c in choices}
        expert = chosen.pop() if len(chosen) == 1 else None
        with self.using(agent.model, expert):
            yield choices

    # --- files ----------------------------------------------------------------------------------
    def write(self, folder: Path, model) -> None:
        root = Path(folder) / FOLDER
        root.mkdir(parents=True, exist_ok=True)
        decomposition = self.decomposition
        if is_packed_export(folder):
            # option (b): the packed layers take the expert as a rank-r correction, which needs only the top
            # `packed_rank` columns of U and V (the full cache is most of a small bundle's bytes)
            decomposition = {n: truncate(d, self.packed_rank) for n, d in decomposition.items()}
        params = dict(model.named_parameters())
        digest = weight_digest(model, self.names) if all(n in params for n in self.names) else ""
        save_decomposition(decomposition, root / SVD_FILE, digest)
        for name, z in self.experts.items():
            tensors = {n: t.detach().float().cpu().contiguous() for n, t in z.items()}
            atomic_write_bytes(root / f"expert-{name}.safetensors",
                               reproducible_safetensors(tensors, {"format": FORMAT, "expert": name}))
        router = None
        if self.router is not None:
            r = self.router
            atomic_write_bytes(root / ROUTER_FILE, reproducible_safetensors(
                {"weight": r.weight.contiguous(), "bias": r.bias.contiguous(), "mean": r.mean.contiguous(),
                 "std": r.std.contiguous()}, {"format": FORMAT}))
            router = {"classes": r.classes, "threshold": self.threshold, "features": "mean last hidden state"}
        classifier = None
        if self.classifier is not None:
            c = self.classifier
            tensors = {f"z.{n}": t.detach().float().cpu().contiguous() for n, t in c.z.items()}
            tensors["bias"] = c.bias.detach().float().cpu().contiguous()
            atomic_write_bytes(root / CLASSIFIER_FILE, reproducible_safetensors(tensors, {"format": FORMAT}))
            classifier = {"classes": c.classes, "template": c.template}
        index = {"format": FORMAT, "matrices": self.names, "max_mult": self.max_mult,
                 "experts": sorted(self.experts), "router": router, "packed_rank": self.packed_rank,
                 "classifier": classifier, "dispatch": self.dispatch, "threshold": self.threshold,
                 "policy": None if self.policy is None else self.policy.as_dict(), "application": self.application}
        atomic_write_text(root / INDEX, json.dumps(index, indent=2, sort_keys=True) + "\n")

    @classmethod
    def read(cls, folder: Path, model) -> "ExpertSet | None":
        root = Path(folder) / FOLDER
        if not (root / INDEX).is_file():
            return None
        try:
            index = json.loads((root / INDEX).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ForgeError(f"corrupted expert index {root / INDEX}: {exc}") from None
        if index.get("format") != FORMAT:
            raise ForgeError(f"{root / INDEX} is not of format {FORMAT} (found {index.get('format')!r})")
        names = list(index["matrices"])
        params = dict(model.named_parameters())
        if any(n not in params for n in names):
            # a packed export has no latent matrices to decompose or to check the cache against: the stored
            # factors (the top-r directions of the latent weights it was packed from) are used as they are
            svd = root / SVD_FILE
            decomposition: dict[str, Decomposition] = load_decomposition(svd, names)[0] if svd.is_file() else {}
        else:
            decomposition = cached_decomposition(model, names, root / SVD_FILE)
        experts = {}
        for name in index["experts"]:
            path = root / f"expert-{name}.safetensors"
            try:
                z = load_file(str(path))
            except (SafetensorError, OSError) as exc:
                raise ForgeError(f"corrupted expert {path}: {exc}") from None
            if set(z) != set(names):
                raise ForgeError(f"expert {path} does not cover the matrices named in {INDEX}")
            experts[name] = z
        router, threshold = None, 0.0
        if index.get("router"):
            try:
                t = load_file(str(root / ROUTER_FILE))
            except (SafetensorError, OSError) as exc:
                raise ForgeError(f"corrupted router {root / ROUTER_FILE}: {exc}") from None
            router = Router(list(index["router"]["classes"]), t["weight"], t["bias"], t["mean"], t["std"])
            threshold = float(index["router"].get("threshold", 0.0))
        threshold = float(index.get("threshold", threshold))
        classifier = None
        if index.get("classifier"):
            path = root / CLASSIFIER_FILE
            try:
                tensors = load_file(str(path))
            except (SafetensorError, OSError) as exc:
                raise ForgeError(f"corrupted classification vector {path}: {exc}") from None
            found = index["classifier"]
            z = {n[2:]: t for n, t in tensors.items() if n.startswith("z.")}
            if set(z) != set(names) or tensors.get("bias") is None or len(tensors["bias"]) != len(found["classes"]):
                raise ForgeError(f"{path} does not match the matrices and classes named in {INDEX}")
            classifier = SelfClassifier(list(found["classes"]), z, tensors["bias"], str(found.get("template", TEMPLATE)))
        dispatch = index.get("dispatch", "router")
        if dispatch not in DISPATCH_MODES:
            raise ForgeError(f"{root / INDEX}: unknown dispatch mode {dispatch!r} (known: {', '.join(DISPATCH_MODES)})")
        policy = None
        if index.get("policy") is not None:
            found = index["policy"]
            try:
                policy = ConfidencePolicy(float(found["base_above"]), float(found["single_above"]))
            except (TypeError, KeyError, ValueError):
                raise ForgeError(f"{root / INDEX}: malformed confidence policy {found!r} "
                                 "(expected base_above and single_above numbers)") from None
        application = index.get("application", "weights")  # folders written before the choice held W' in the weights
        if application not in APPLICATIONS:
            raise ForgeError(f"{root / INDEX}: unknown expert application {application!r} "
                             f"(known: {', '.join(APPLICATIONS)})")
        rank = index.get("packed_rank")
        return cls(names, decomposition, experts, float(index.get("max_mult", 1.0)), router, threshold,
                   packed_rank=None if rank is None else int(rank), classifier=classifier, dispatch=dispatch,
                   policy=policy, application=application)


class ExpertsExtension:
    """`experts/` beside the model: SVF expert vectors, their SVD cache and the prompt router."""

    name = "experts"

    def restore(self, agent, folder: Path) -> None:
        found = ExpertSet.read(folder, agent.model)
        if found is not None:
            agent.extensions[self.name] = found

    def prepare_save(self, agent) -> None:
        return None

    def write(self, agent, folder: Path) -> None:
        experts = agent.extensions.get(self.name)
        if experts is not None:
            experts.write(folder, agent.model)
