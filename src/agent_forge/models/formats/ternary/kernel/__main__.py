"""``python -m agent_forge.models.formats.ternary.kernel``: compile the kernel (if needed) and say which path runs."""

from . import kernel_description

print(kernel_description())
