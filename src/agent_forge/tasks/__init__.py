"""Procedurally generated, verifiable tasks in four domains with ten levels each, in disjoint splits.

Domains: `arithmetic` (answers digits reversed), `strings` (nested code-like calls on words), `logic`
(max/min, patterns, sorting, program traces) and `facts` (multi-hop recall over a generated world).
Levels 1-2 of each domain are easy; levels 3-4 of arithmetic/strings/logic need a skill levels 1-2 never show
(carries, shifting letters, sorting digits); levels 5-10 keep growing. Exercise it with:

    python -c "from agent_forge.tasks import DOMAINS; [print(n, l, d.describe_level(l)) for n, d in DOMAINS.items() for l in (1, 3, 10)]"
"""

from .alphabet import alphabet
from .base import LEVELS, SPLITS, Domain, Task, split_of, split_of_task, task_id_for
from .knowledge import KnowledgeBase
from .registry import DOMAINS, get_domain
from .sampling import corpus_text, iter_tasks, knowledge_base_for, make_mixture, make_tasks, task_grid, task_stream
from .verify import normalize_answer, verify

__all__ = [
    "DOMAINS", "Domain", "KnowledgeBase", "LEVELS", "SPLITS", "Task", "alphabet", "corpus_text", "get_domain",
    "iter_tasks", "knowledge_base_for", "make_mixture", "make_tasks", "normalize_answer", "split_of",
    "split_of_task", "task_grid", "task_id_for", "task_stream", "verify",
]
