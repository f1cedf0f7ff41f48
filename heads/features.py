"""Cached features + labels -> arrays for one experiment (reads the store, never extracts)."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from extract.store import FeatureStore, SetHeader

log = logging.getLogger(__name__)


class FeatureError(KeyError):
    """The requested features are not in the store; the message says which extract to run."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class FeatureRequest:
    """Which array of which set: a spec or key, plus field / layer / pooling for SSL sets."""

    features: str
    field: str | None = None
    layer: int | None = None
    pooling: str = "mean"


def resolve_field(header: SetHeader, field: str | None, layer: int | None, pooling: str
                  ) -> tuple[str, int | None, int | None]:
    """(field name, row index, layer number) to read for a request.

    The default field is ``functionals`` for openSMILE sets and ``pooled_<pooling>`` for SSL
    sets; the default layer is the last stored one.

    Raises:
        FeatureError: no such field or layer (names the ones stored).
    """
    fields = header.fields
    if field is None:
        if "functionals" in fields:
            field = "functionals"
        elif f"pooled_{pooling}" in fields:
            field = f"pooled_{pooling}"
        else:
            fixed = [k for k, f in fields.items() if not f.ragged and f.shape]
            if len(fixed) != 1:
                raise FeatureError(f"set {header.key} has fields {sorted(fields)}; choose one")
            field = fixed[0]
    if field not in fields:
        raise FeatureError(f"set {header.key} has no field {field!r}; fields: {sorted(fields)}. "
                           f"Poolings are chosen at extraction (--poolings).")
    layers = fields[field].attrs.get("layers")
    if layers is None:
        if layer is not None:
            raise FeatureError(f"a layer was given but field {field!r} of {header.key} has no layers")
        return field, None, None
    if layer is None:
        layer = layers[-1]
    if layer not in layers:
        raise FeatureError(f"layer {layer} is not stored in {header.key}; stored layers: {layers}. "
                           f"Extract it with --layers.")
    return field, layers.index(layer), layer


def find_set(store: FeatureStore, features: str) -> SetHeader:
    try:
        return store.find(features)
    except KeyError as exc:
        raise FeatureError(exc.args[0]) from None


def load_matrix(store: FeatureStore, requests: Sequence[FeatureRequest], ids: Sequence[str]
                ) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """Concatenate the requested arrays for ``ids``.

    Returns:
        (X float32 (n, D), present bool (n,): clip has every requested array,
        descriptions: one dict per request with key, field, layer).
    """
    blocks, present, desc = [], np.ones(len(ids), dtype=bool), []
    for req in requests:
        header = find_set(store, req.features)
        field, index, layer = resolve_field(header, req.field, req.layer, req.pooling)
        X, ok = store.read(header.key, field, ids, index=index)
        blocks.append(X.reshape(len(ids), -1).astype(np.float32))
        present &= ok
        desc.append({"key": header.key, "spec": header.spec, "field": field, "layer": layer,
                     "dim": int(blocks[-1].shape[1])})
    X = np.concatenate(blocks, axis=1) if blocks else np.zeros((len(ids), 0), np.float32)
    return X, present, desc
