"""SVF expert vectors (Transformer², Sun et al. 2025) as a model format: the maths (`svf`), the files beside
the model, the prompt router and the answer-time dispatch hook (`store`).

An expert is one vector z per MLP matrix scaling its singular values; `load_agent` restores an agent's experts
as `agent.extensions["experts"]` (an `ExpertSet`, itself the dispatch hook of `inference.answer`), and
`save_agent` writes them under `experts/`. On a packed agent an expert is a rank-r correction beside each
packed layer (`lowrank`, option (b)); on a latent model the agent holds it either way (`held`: written into the
weights, or as the same correction beside them), as the experts stage chose by measurement. With a confidence
policy (`policy`) the agent's self-confidence decides between the base weights, one expert and a mixture of
experts.
"""

from .classify import SelfClassifier, label_scores
from .store import (
    FOLDER, Choice, ExpertSet, ExpertsExtension, Router, cached_decomposition, load_decomposition, prompt_features,
    save_decomposition, weight_digest,
)
from .lowrank import APPLICATIONS, corrected, dropped_share, held, truncate
from .policy import MIX, ConfidencePolicy, choose_policy, mixture_key, vector
from .svf import (
    DEFAULT_PATTERN, Decomposition, applied, compose, correction, decompose, decompose_model, expert_weights,
    logit_init, lora_parameter_count, mix, scaled_singular_values, svf_parameter_count, target_names, z_of,
)

__all__ = [
    "APPLICATIONS", "DEFAULT_PATTERN", "FOLDER", "held", "MIX", "Choice", "ConfidencePolicy", "choose_policy", "mixture_key", "vector", "SelfClassifier", "label_scores", "Decomposition", "ExpertSet", "ExpertsExtension", "Router", "applied",
    "cached_decomposition", "compose", "corrected", "correction", "decompose", "decompose_model", "dropped_share", "expert_weights",
    "load_decomposition", "logit_init", "lora_parameter_count", "mix", "prompt_features", "save_decomposition",
    "scaled_singular_values", "svf_parameter_count", "target_names", "truncate", "weight_digest", "z_of",
]
