"""Published numbers to show beside ours, with their source (field notes, section 3).

Every entry is labelled as published; none of these numbers is computed here.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Published:
    task: str      # our task name
    system: str
    split: str     # 'val' or 'test'
    score: float
    metric: str
    source: str


PUBLISHED: tuple[Published, ...] = (
    # A-VB 2022 official end-to-end baseline (Baird et al., A-VB 2022 white paper)
    Published("avb-high", "A-VB baseline (end-to-end)", "test", 0.5686, "ccc", "A-VB 2022 baseline paper"),
    Published("avb-two", "A-VB baseline (end-to-end)", "test", 0.5084, "ccc", "A-VB 2022 baseline paper"),
    Published("avb-culture", "A-VB baseline (end-to-end)", "test", 0.4401, "ccc", "A-VB 2022 baseline paper"),
    Published("avb-type", "A-VB baseline (end-to-end)", "test", 0.4172, "uar", "A-VB 2022 baseline paper"),
    Published("avb-high", "A-VB baseline (end-to-end)", "val", 0.564, "ccc", "A-VB 2022 baseline paper"),
    Published("avb-culture", "A-VB baseline (end-to-end)", "val", 0.436, "ccc", "A-VB 2022 baseline paper"),
    Published("avb-two", "A-VB baseline (end-to-end)", "val", 0.499, "ccc", "A-VB 2022 baseline paper"),
    Published("avb-type", "A-VB baseline (end-to-end)", "val", 0.412, "uar", "A-VB 2022 baseline paper"),
    # ExVo 2022 multitask official baselines
    Published("exvo", "ExVo baseline ComParE + MLP", "val", 0.349, "exvo", "ExVo 2022 baseline paper"),
    Published("exvo", "ExVo baseline ComParE + MLP", "test", 0.335, "exvo", "ExVo 2022 baseline paper"),
    Published("exvo", "ExVo baseline eGeMAPS + MLP", "test", 0.314, "exvo", "ExVo 2022 baseline paper"),
    # Data2vec multitask (hcmlab; seed paper 000)
    Published("avb-high", "data2vec multitask (seed 000)", "test", 0.685, "ccc", "seed paper 000"),
    Published("avb-culture", "data2vec multitask (seed 000)", "test", 0.526, "ccc", "seed paper 000"),
    Published("avb-type", "data2vec multitask (seed 000)", "test", 0.586, "uar", "seed paper 000"),
    # wav2vec2 layer 12 + LSTM (seed 002)
    Published("avb-two", "wav2vec2 L12 + LSTM (seed 002)", "test", 0.6202, "ccc", "seed paper 002"),
    Published("avb-high", "wav2vec2 L12 + LSTM (seed 002)", "test", 0.6677, "ccc", "seed paper 002"),
    Published("avb-culture", "wav2vec2 L12 + LSTM (seed 002)", "test", 0.5495, "ccc", "seed paper 002"),
    Published("avb-type", "wav2vec2 L12 + LSTM (seed 002)", "test", 0.4970, "uar", "seed paper 002"),
    # Seed 001 and 003 (ExVo multitask, validation unless noted)
    Published("exvo", "Conformer single-task (seed 001)", "val", 0.432, "exvo", "seed paper 001"),
    Published("exvo", "ResNet18 single-task (seed 001)", "val", 0.416, "exvo", "seed paper 001"),
    Published("exvo", "DRUW multi-exit CNN (seed 003)", "val", 0.423, "exvo", "seed paper 003"),
    Published("exvo", "DRUW multi-exit CNN (seed 003)", "test", 0.394, "exvo", "seed paper 003"),
)


def published_for(task: str) -> list[Published]:
    """Published entries for one of our task names."""
    return [p for p in PUBLISHED if p.task == task]
