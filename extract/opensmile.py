"""openSMILE functionals and low-level descriptors (ComParE_2016, eGeMAPSv02, ...).

Values equal ``opensmile.Smile(...).process_signal(signal, 16000)`` for the same 16 kHz mono
signal: the stored row is that call's output, unchanged (tested against it).
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from extract.base import SAMPLE_RATE, Extractor, FieldSpec, register_extractor

LEVELS = ("functionals", "lld")


@register_extractor
class OpenSmileExtractor(Extractor):
    """openSMILE feature sets by name: ``opensmile:ComParE_2016``, ``opensmile:eGeMAPSv02``.

    Functionals give one vector per clip (field ``functionals``); ``--level lld`` gives the
    frame-wise low-level descriptors as a sequence (field ``lld``).
    """

    name = "opensmile"
    mode = "per_clip"

    def __init__(self, arg: str, options: Any) -> None:
        super().__init__(arg, options)
        self._smile: Any = None
        self._columns: list[str] | None = None

    def resolve(self) -> None:
        import opensmile

        known = [fs.name for fs in opensmile.FeatureSet]
        if self.arg not in known:
            raise ValueError(f"unknown openSMILE feature set {self.arg!r}; known: {', '.join(known)}")
        if self.options.level not in LEVELS:
            raise ValueError(f"--level must be one of {LEVELS}, got {self.options.level!r}")
        self._columns = list(self._get_smile().feature_names)

    def _get_smile(self) -> Any:
        if self._smile is None:
            import opensmile

            level = (opensmile.FeatureLevel.Functionals if self.options.level == "functionals"
                     else opensmile.FeatureLevel.LowLevelDescriptors)
            self._smile = opensmile.Smile(feature_set=opensmile.FeatureSet[self.arg],
                                          feature_level=level)
        return self._smile

    def identity(self) -> dict[str, Any]:
        import opensmile

        return {"extractor": "opensmile", "feature_set": self.arg, "level": self.options.level,
                "opensmile": opensmile.__version__, "sample_rate": SAMPLE_RATE}

    def readable_name(self) -> str:
        return f"opensmile-{self.arg}-{self.options.level}"

    def fields(self) -> dict[str, FieldSpec]:
        if self._columns is None:
            self.resolve()
        cols = self._columns or []
        if self.options.level == "functionals":
            return {"functionals": FieldSpec((len(cols),), "float32", False, {"columns": cols})}
        return {"lld": FieldSpec((len(cols),), "float32", True, {"columns": cols})}

    def provenance(self) -> dict[str, Any]:
        import opensmile

        return {"opensmile": opensmile.__version__, "device": "cpu", "dtype": "float32"}

    def compute(self, signal: np.ndarray) -> dict[str, np.ndarray]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Segment too short": turned into an error below
            values = self._get_smile().process_signal(signal, SAMPLE_RATE).to_numpy(np.float32)
        if self.options.level == "functionals":
            row = values[0]
            if not np.isfinite(row).all():
                raise ValueError(
                    f"openSMILE {self.arg} gave {int((~np.isfinite(row)).sum())} non-finite "
                    f"values for this {1000 * len(signal) / SAMPLE_RATE:.0f} ms clip (too short or "
                    f"degenerate for its analysis windows); check the clip or drop it")
            return {"functionals": row}
        if len(values) == 0:
            raise ValueError(f"openSMILE {self.arg} gave no LLD frame for this "
                             f"{1000 * len(signal) / SAMPLE_RATE:.0f} ms clip (too short)")
        return {"lld": values}
