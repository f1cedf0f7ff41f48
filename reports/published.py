"""Published numbers to show beside ours, with their source (the seed papers' tables; field notes, section 3).

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
    # A-VB 2022 official end-to-end baseline (Baird et al., A-VB 2022 white paper, arXiv:2207.03572;
    # test: FIELD_NOTES section 3; validation: 000 Table I "Baseline" row)
    Published("avb-high", "A-VB baseline (end-to-end)", "test", 0.5686, "ccc", "A-VB 2022 baseline paper"),
    Published("avb-two", "A-VB baseline (end-to-end)", "test", 0.5084, "ccc", "A-VB 2022 baseline paper"),
    Published("avb-culture", "A-VB baseline (end-to-end)", "test", 0.4401, "ccc", "A-VB 2022 baseline paper"),
    Published("avb-type", "A-VB baseline (end-to-end)", "test", 0.4172, "uar", "A-VB 2022 baseline paper"),
    Published("avb-high", "A-VB baseline (end-to-end)", "val", 0.564, "ccc", "seed paper 000, Table I"),
    Published("avb-culture", "A-VB baseline (end-to-end)", "val", 0.436, "ccc", "seed paper 000, Table I"),
    Published("avb-two", "A-VB baseline (end-to-end)", "val", 0.499, "ccc", "seed paper 000, Table I"),
    Published("avb-type", "A-VB baseline (end-to-end)", "val", 0.412, "uar", "seed paper 000, Table I"),
    # ExVo 2022 multitask official baselines (as seed paper 003, Table 1, reports them)
    Published("exvo", "ExVo baseline ComParE + MLP", "val", 0.349, "exvo", "seed paper 003, Table 1"),
    Published("exvo", "ExVo baseline ComParE + MLP", "test", 0.335, "exvo", "seed paper 003, Table 1"),
    Published("exvo", "ExVo baseline eGeMAPS + MLP", "val", 0.324, "exvo", "seed paper 003, Table 1"),
    Published("exvo", "ExVo baseline eGeMAPS + MLP", "test", 0.314, "exvo", "seed paper 003, Table 1"),
    # Data2vec multitask (hcmlab; seed paper 000), after fine-tuning: Table II (test), Table I (val)
    Published("avb-high", "data2vec multitask -SM (seed 000)", "test", 0.685, "ccc", "seed paper 000, Table II"),
    Published("avb-culture", "data2vec multitask -SM (seed 000)", "test", 0.515, "ccc", "seed paper 000, Table II"),
    Published("avb-type", "data2vec multitask -SM (seed 000)", "test", 0.586, "uar", "seed paper 000, Table II"),
    Published("avb-high", "data2vec multitask B960h (seed 000)", "test", 0.679, "ccc", "seed paper 000, Table II"),
    Published("avb-culture", "data2vec multitask B960h (seed 000)", "test", 0.526, "ccc", "seed paper 000, Table II"),
    Published("avb-type", "data2vec multitask B960h (seed 000)", "test", 0.573, "uar", "seed paper 000, Table II"),
    Published("avb-high", "data2vec multitask B960h (seed 000)", "val", 0.658, "ccc", "seed paper 000, Table I"),
    Published("avb-culture", "data2vec multitask B960h (seed 000)", "val", 0.642, "ccc", "seed paper 000, Table I"),
    Published("avb-type", "data2vec multitask -SM (seed 000)", "val", 0.584, "uar", "seed paper 000, Table I"),
    # wav2vec2 layer 12 + LSTM (seed 002), final systems: LARGE-LV60K (High, Culture), XLSR53 (Two, Type)
    Published("avb-two", "wav2vec2 XLSR53 L12 + LSTM (seed 002)", "test", 0.6202, "ccc", "seed paper 002, Table V"),
    Published("avb-high", "wav2vec2 LV60K L12 + LSTM (seed 002)", "test", 0.6677, "ccc", "seed paper 002, Table V"),
    Published("avb-culture", "wav2vec2 LV60K L12 + LSTM (seed 002)", "test", 0.5495, "ccc", "seed paper 002, Table V"),
    Published("avb-type", "wav2vec2 XLSR53 L12 + LSTM (seed 002)", "test", 0.4970, "uar", "seed paper 002, Table V"),
    Published("avb-two", "wav2vec2 XLSR53 L12 + LSTM (seed 002)", "val", 0.6194, "ccc", "seed paper 002, Table V"),
    Published("avb-high", "wav2vec2 LV60K L12 + LSTM (seed 002)", "val", 0.6676, "ccc", "seed paper 002, Table V"),
    Published("avb-culture", "wav2vec2 LV60K L12 + LSTM (seed 002)", "val", 0.5493, "ccc", "seed paper 002, Table V"),
    Published("avb-type", "wav2vec2 XLSR53 L12 + LSTM (seed 002)", "val", 0.4989, "uar", "seed paper 002, Table V"),
    # seed 002, Table I: BASE extractor (CCC loss, last pooling, 20 epochs; the frozen-base recipe slabcnu-lstm)
    Published("avb-two", "wav2vec2 BASE L12 + LSTM (seed 002)", "val", 0.5465, "ccc", "seed paper 002, Table I"),
    Published("avb-high", "wav2vec2 BASE L12 + LSTM (seed 002)", "val", 0.5869, "ccc", "seed paper 002, Table I"),
    Published("avb-culture", "wav2vec2 BASE L12 + LSTM (seed 002)", "val", 0.4718, "ccc", "seed paper 002, Table I"),
    Published("avb-type", "wav2vec2 BASE L12 + LSTM (seed 002)", "val", 0.4165, "uar", "seed paper 002, Table I"),
    # Seed 001 and 003 (ExVo multitask, validation unless noted)
    Published("exvo", "Conformer single-task (seed 001)", "val", 0.432, "exvo", "seed paper 001, Table 1"),
    Published("exvo", "Conformer multitask (seed 001)", "val", 0.424, "exvo", "seed paper 001, Table 1"),
    Published("exvo", "ResNet18 single-task (seed 001)", "val", 0.416, "exvo", "seed paper 001, Table 1"),
    Published("exvo", "ResNet34 single-task (seed 001)", "val", 0.414, "exvo", "seed paper 001, Table 1"),
    Published("exvo", "ResNet50 single-task (seed 001)", "val", 0.412, "exvo", "seed paper 001, Table 1"),
    Published("exvo", "DRUW multi-exit CNN (seed 003)", "val", 0.423, "exvo", "seed paper 003, Table 1"),
    Published("exvo", "DRUW multi-exit CNN (seed 003)", "test", 0.394, "exvo", "seed paper 003, Table 1"),
    Published("exvo", "single-task multi-exit CNN (seed 003)", "val", 0.418, "exvo", "seed paper 003, Table 1"),
    # SER-MTL with speaker normalisation (seed 004), IEMOCAP, one fold: Test speaker 01F, trained
    # on the other nine. Table II (accuracy = WA), Table III (ablation: wer, accuracy, speaker
    # accuracy; on which clips speaker accuracy was measured is not stated)
    Published("iemocap4", "SER-MTL [Ghosh et al.] beta 0 (seed 004)", "test", 0.746, "wa", "seed paper 004, Table II"),
    Published("iemocap4", "SER-MTL + GRL beta 1 (seed 004)", "test", 0.751, "wa", "seed paper 004, Tables II, III"),
    Published("iemocap4", "SER-MTL + GRL beta 0.1 (seed 004)", "test", 0.751, "wa", "seed paper 004, Tables II, III"),
    Published("iemocap4", "SER-MTL forward beta 1 (seed 004)", "test", 0.739, "wa", "seed paper 004, Table III"),
    Published("iemocap4", "SER-MTL forward beta 0.1 (seed 004)", "test", 0.749, "wa", "seed paper 004, Table III"),
    Published("iemocap4", "SER-MTL + GRL beta 1 (seed 004)", "test", 0.244, "wer", "seed paper 004, Table III"),
    Published("iemocap4", "SER-MTL + GRL beta 0.1 (seed 004)", "test", 0.247, "wer", "seed paper 004, Table III"),
    Published("iemocap4", "SER-MTL forward beta 1 (seed 004)", "test", 0.243, "wer", "seed paper 004, Table III"),
    Published("iemocap4", "SER-MTL forward beta 0.1 (seed 004)", "test", 0.239, "wer", "seed paper 004, Table III"),
    Published("iemocap4", "SER-MTL + GRL beta 1 (seed 004)", "test", 0.292, "speaker_accuracy", "seed paper 004, Table III"),
    Published("iemocap4", "SER-MTL + GRL beta 0.1 (seed 004)", "test", 0.298, "speaker_accuracy", "seed paper 004, Table III"),
    Published("iemocap4", "SER-MTL forward beta 1 (seed 004)", "test", 0.288, "speaker_accuracy", "seed paper 004, Table III"),
    Published("iemocap4", "SER-MTL forward beta 0.1 (seed 004)", "test", 0.321, "speaker_accuracy", "seed paper 004, Table III"),
)


def published_for(task: str) -> list[Published]:
    """Published entries for one of our task names."""
    return [p for p in PUBLISHED if p.task == task]
