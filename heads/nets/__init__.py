"""Torch nets for cached features, one module per family, and the :data:`NETS` registry.

Importing this package imports every family, so :data:`NETS` is complete wherever it is used:
:mod:`heads.nets.mlp` (vectors), :mod:`heads.nets.sequence` (frame sequences),
:mod:`heads.nets.cnn` (log-mel spectrograms). :mod:`heads.nets.base` holds the contract and
:mod:`heads.nets.masking` the handling of padded frames.
"""
from __future__ import annotations

from heads.config import OUTPUT_MODES
from heads.nets import cnn, mlp, sequence  # noqa: F401  (registers every net)
from heads.nets.base import (CLASSIFICATION, INPUT_KINDS, NETS, REGRESSION, TASK_KINDS, HeadNet,
                             TaskSpec, build_net, register_net, regression_output)
from heads.nets.masking import length_mask, masked_mean, pool_frames

__all__ = ["NETS", "HeadNet", "TaskSpec", "REGRESSION", "CLASSIFICATION", "TASK_KINDS",
           "INPUT_KINDS", "OUTPUT_MODES", "build_net", "register_net", "regression_output",
           "length_mask", "masked_mean", "pool_frames"]
