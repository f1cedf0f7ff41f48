"""The compute devices a user may name (``--device``), one tuple for every command.

``auto`` means CUDA when torch sees a device, else the CPU. This module imports nothing, so
configuration code can validate a device name without importing torch.
"""
from __future__ import annotations

DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
"""Valid device names, in the order help texts list them."""
