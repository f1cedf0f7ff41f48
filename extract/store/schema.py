"""What a feature set is and where its files live: the record schema version, the layout's
file names, :class:`SetHeader`, :class:`SetInfo` and the store's errors."""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from extract.base import FieldSpec

SCHEMA_VERSION = 1
"""Version of a set's records (ids, hashes, fields, failures, notes); part of every set's key.
It did not change when the store went from one file to one file per set: the layout is not
the records, so every key stays what it was."""

LAYOUT_VERSION = 2
"""2: one compacted file per set (``features/<key>.h5``); 1: every set in one ``features.h5``
(read as it is, moved into per-set files by the next compaction)."""

STORE_FILE = "features.h5"        # layout 1: every set in one file
SETS_DIR = "features"             # layout 2: features/<key>.h5, one compacted file per set
JOURNAL_DIR = "features.journal"  # parts written since the last compaction, per set
CATALOG_FILE = "sets.json"        # every set's header, outside HDF5: lets `verify --repair` rebuild


class StoreError(RuntimeError):
    """The store cannot be used as asked; the message says why and what to do."""


class SchemaMismatch(StoreError):
    """The store was written with another schema version."""


class ConfigMismatch(StoreError):
    """A feature set's stored configuration differs from the one requested."""


@dataclass(frozen=True)
class SetHeader:
    """What a feature set is: written once when the set is created, checked on every write.

    Attributes:
        key: ``<name>-<config_hash>``.
        name: readable name (``opensmile-eGeMAPSv02-functionals``).
        spec: the spec string the user gave (``opensmile:eGeMAPSv02``).
        config: the extractor identity (everything that determines values).
        config_hash: hash of ``config`` and the schema version.
        fields: field name -> FieldSpec.
        provenance: library versions, device, dtype... plus a list of runs.
    """

    key: str
    name: str
    spec: str
    config: dict[str, Any]
    config_hash: str
    fields: dict[str, FieldSpec]
    provenance: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> str:
        d = {
            "key": self.key, "name": self.name, "spec": self.spec, "config": self.config,
            "config_hash": self.config_hash, "schema_version": self.schema_version,
            "provenance": self.provenance,
            "fields": {k: {"shape": list(f.shape), "dtype": f.dtype, "ragged": f.ragged,
                           "attrs": f.attrs} for k, f in self.fields.items()},
        }
        return json.dumps(d, sort_keys=True, default=str)

    @classmethod
    def from_json(cls, text: str) -> SetHeader:
        d = json.loads(text)
        fields = {k: FieldSpec(tuple(v["shape"]), v["dtype"], v["ragged"], v.get("attrs", {}))
                  for k, v in d["fields"].items()}
        return cls(d["key"], d["name"], d["spec"], d["config"], d["config_hash"], fields,
                   d.get("provenance", {}), d.get("schema_version", SCHEMA_VERSION))

    def same_config(self, other: SetHeader) -> str | None:
        """Name of the first config field that differs from ``other`` (None when equal)."""
        for attr in ("config_hash", "schema_version"):
            if getattr(self, attr) != getattr(other, attr):
                return attr
        for k in sorted(set(self.config) | set(other.config)):
            if self.config.get(k) != other.config.get(k):
                return f"config.{k}"
        if set(self.fields) != set(other.fields):
            return "fields"
        return None


@dataclass
class SetInfo:
    """A feature set as seen by a reader: its header and what is stored."""

    header: SetHeader
    n_rows: int
    n_failed: int
    n_parts: int

    @property
    def key(self) -> str:
        return self.header.key


def config_differences(headers: Sequence[SetHeader]) -> list[str]:
    """The config fields whose values are not the same in every header, sorted.

    Example:
        >>> a = SetHeader("a-1", "a", "k:a", {"m": 1, "poolings": ["mean"]}, "1", {})
        >>> b = SetHeader("a-2", "a", "k:a", {"m": 1, "poolings": ["std"]}, "2", {})
        >>> config_differences([a, b])
        ['poolings']
    """
    names = sorted({k for h in headers for k in h.config})
    return [k for k in names
            if len({json.dumps(h.config.get(k), sort_keys=True) for h in headers}) > 1]


class AmbiguousSet(KeyError):
    """Several stored sets match a spec or name and serve what was asked.

    The message shows only the configuration fields that differ between them.

    Attributes:
        spec: the spec or name that was asked for.
        keys: the candidates' keys, sorted.
    """

    def __init__(self, spec: str, headers: Sequence[SetHeader]) -> None:
        headers = sorted(headers, key=lambda h: h.key)
        self.spec = spec
        self.keys = [h.key for h in headers]
        differ = config_differences(headers)
        lines = [f"{h.key}: " + ", ".join(f"{k}={json.dumps(h.config.get(k), sort_keys=True)}"
                                          for k in differ) for h in headers]
        super().__init__(
            f"{len(headers)} feature sets match {spec!r} and hold what was asked; they differ in "
            f"{', '.join(differ) or 'nothing but their key'}:\n  " + "\n  ".join(lines)
            + f"\nName one by its key, e.g. --features {self.keys[0]}")

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0])
