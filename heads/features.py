"""Cached features + labels -> arrays for one experiment (reads the store, never extracts)."""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from extract.store import AmbiguousSet, FeatureStore, SetHeader

log = logging.getLogger(__name__)


class FeatureError(KeyError):
    """The requested features are not in the store; the message says which extract to run."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0]) if self.args else ""


class AmbiguousFeatures(FeatureError):
    """Several stored sets serve a ``--features`` value (caused by
    :class:`extract.store.AmbiguousSet`, which names them and what differs)."""


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
    sets (never another pooling); the default layer is the last stored one.

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
            # another pooling is never taken in place of the one asked for
            fixed = [k for k, f in fields.items()
                     if not f.ragged and f.shape and not k.startswith("pooled_")]
            pooled = sorted(k[len("pooled_"):] for k in fields if k.startswith("pooled_"))
            if pooled and not fixed:
                raise FeatureError(f"set {header.key} has no pooling {pooling!r}; stored poolings: "
                                   f"{pooled} (choose one with --pooling). Poolings are chosen "
                                   f"at extraction (--poolings).")
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


def find_set(store: FeatureStore, features: str,
             needs: Callable[[SetHeader], object] | Sequence[Callable[[SetHeader], object]] = ()
             ) -> SetHeader:
    """The set a ``--features`` value names, resolved by what the caller needs.

    Args:
        store: the workdir's store.
        features: a key, spec or set name.
        needs: checks a set must pass, strictest first (each raises :class:`FeatureError`
            when the set cannot serve); among the sets sharing a spec, the first check that
            some pass picks them (see :meth:`FeatureStore.find`).

    Raises:
        FeatureError: no set, or no single set, serves the request; caused by
            :class:`AmbiguousFeatures` when several do.
    """
    checks = [needs] if callable(needs) else list(needs)

    def reason(check: Callable[[SetHeader], object]) -> Callable[[SetHeader], str | None]:
        def test(header: SetHeader) -> str | None:
            try:
                check(header)
            except FeatureError as exc:
                return str(exc)
            return None
        return test

    try:
        return store.find(features, usable=[reason(c) for c in checks])
    except AmbiguousSet as exc:
        raise AmbiguousFeatures(str(exc)) from exc
    except KeyError as exc:
        raise FeatureError(exc.args[0]) from None


def request_checks(field: str | None, layer: int | None, pooling: str
                   ) -> list[Callable[[SetHeader], object]]:
    """The checks of :func:`find_set` for a vector request, strictest first.

    A set that stores the asked pooling (or field) by name comes first; a set whose only
    vector field :func:`resolve_field` would take by default comes second.
    """
    def exact(header: SetHeader) -> None:
        name, _, _ = resolve_field(header, field, layer, pooling)
        if field is None and name not in ("functionals", f"pooled_{pooling}"):
            raise FeatureError(f"no field pooled_{pooling} (fields: {sorted(header.fields)})")

    def default(header: SetHeader) -> None:
        resolve_field(header, field, layer, pooling)

    return [exact, default]


def load_matrix(store: FeatureStore, requests: Sequence[FeatureRequest], ids: Sequence[str]
                ) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """Concatenate the requested arrays for ``ids``.

    Returns:
        (X float32 (n, D), present bool (n,): clip has every requested array,
        descriptions: one dict per request with key, field, layer).
    """
    blocks, present, desc = [], np.ones(len(ids), dtype=bool), []
    for req in requests:
        header = find_set(store, req.features, request_checks(req.field, req.layer, req.pooling))
        field, index, layer = resolve_field(header, req.field, req.layer, req.pooling)
        X, ok = store.read(header.key, field, ids, index=index)
        blocks.append(X.reshape(len(ids), -1).astype(np.float32))
        present &= ok
        desc.append({"key": header.key, "spec": header.spec, "field": field, "layer": layer,
                     "dim": int(blocks[-1].shape[1])})
    X = np.concatenate(blocks, axis=1) if blocks else np.zeros((len(ids), 0), np.float32)
    return X, present, desc
