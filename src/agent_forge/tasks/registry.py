"""The registry of task domains, by name; the one place a new domain is added.

    python -c "from agent_forge.tasks.registry import DOMAINS; [print(d.describe_level(3)) for d in DOMAINS.values()]"
"""

from __future__ import annotations

from ..errors import ForgeError
from .arithmetic import ArithmeticDomain
from .base import Domain
from .facts import FactsDomain
from .logic import LogicDomain
from .strings import StringsDomain

DOMAINS: dict[str, Domain] = {
    "arithmetic": ArithmeticDomain(),
    "strings": StringsDomain(),
    "logic": LogicDomain(),
    "facts": FactsDomain(),
}


def get_domain(name: str) -> Domain:
    try:
        return DOMAINS[name]
    except (KeyError, TypeError):
        raise ForgeError(f"unknown task domain {name!r}; known domains: {list(DOMAINS)}") from None
