"""`python -m agent_forge.cli ...`: the `agent-forge` command."""

from . import main

main()
