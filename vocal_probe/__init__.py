"""vocal-probe from Python (notebooks): open a workdir, read its feature sets as pandas / numpy,
run extractions and training runs with the command line's configurations, without printing.

Example:
    >>> import vocal_probe as vp
    >>> vp.Workdir("runs/mine")
    Workdir('runs/mine')

The README's "From Python (notebooks)" section is a complete, tested example.
"""
from __future__ import annotations

from extract.job import ExtractJobError
from heads.features import FeatureError
from vocal_probe.workdir import ProgressCallback, Workdir, extract_options

__all__ = ["ExtractJobError", "FeatureError", "ProgressCallback", "Workdir", "extract_options"]
