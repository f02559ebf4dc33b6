"""task_grid: make_tasks over every domain and each of its levels, in order."""

import pytest

from agent_forge.errors import ForgeError
from agent_forge.tasks import make_tasks, task_grid


def test_grid_is_make_tasks_for_each_domain_then_level():
    expected = [t for d in ("arithmetic", "logic") for lvl in (1, 3) for t in make_tasks(d, lvl, "val", 4, 2)]
    assert task_grid(("arithmetic", "logic"), [1, 3], "val", 4, 2) == expected


def test_levels_per_domain_and_world_seed():
    grid = task_grid(["facts", "strings"], {"facts": [2], "strings": range(1, 3)}, "test", 3, 5, world_seed=1)
    expected = make_tasks("facts", 2, "test", 3, 5, world_seed=1) + make_tasks("strings", 1, "test", 3, 5) \
        + make_tasks("strings", 2, "test", 3, 5)
    assert grid == expected
    assert task_grid(["logic"], {"logic": []}, "val", 3, 0) == []
    with pytest.raises(ForgeError, match="no levels given"):
        task_grid(["logic", "strings"], {"logic": [1]}, "val", 3, 0)
