"""The complete head registry: imports both families so that :data:`heads.base.HEADS` holds
every head (classical from :mod:`heads.classical`, torch from :mod:`heads.training.head`).
The names, families and inputs alone, without importing a head, are :mod:`heads.catalog`'s.

Example:
    >>> heads = load_heads()
    >>> heads["ridge"].family, heads["mlp-mtl"].family
    ('classical', 'torch')
"""
from __future__ import annotations

import heads.classical  # noqa: F401  (registers the classical heads)
import heads.training.head  # noqa: F401  (registers the torch heads)
from heads.base import HEADS, Head
from heads.catalog import head_help, head_names, unknown_head  # noqa: F401  (torch-free names, --head help)


def load_heads() -> dict[str, Head]:
    """Every registered head, by name."""
    return HEADS


def get_head(name: str) -> Head:
    """The head called ``name``.

    Raises:
        ValueError: unknown head (lists the known ones).
    """
    if name not in HEADS:
        raise unknown_head(name)
    return HEADS[name]
