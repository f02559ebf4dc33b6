"""Agent Forge: forge a self-improving agent model from three specialised base models.

The package is layered (see docs/ARCHITECTURE.md): config -> models -> tasks -> evaluation -> training ->
stages -> pipeline/cli. Each layer imports only from the layers before it.
"""

__version__ = "0.1.0"
