"""Every net of :data:`heads.nets.NETS` as a :class:`heads.base.Head` (family ``torch``).

A torch head validates its options (:class:`heads.config.TrainOptions`), reads vectors or
frame sequences (its net's ``input_kind``) and trains one multitask model for all tasks
through :func:`heads.training.loop.fit_torch`.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from data.corpus import Corpus
from data.tasks import Task
from extract.store import FeatureStore
from heads.base import FitOptions, FitResult, register_head
from heads.config import TrainOptions
from heads.dataset import Dataset, build_dataset
from heads.sequences import build_sequence_dataset
from heads.features import FeatureRequest
from heads.nets import NETS
from heads.training.loop import fit_torch

INPUT_TEXT = {"vector": "vectors", "sequence": "frame sequences"}


class TorchHead:
    """The head of one registered net.

    Args:
        name: a key of :data:`heads.nets.NETS`.
    """

    family = "torch"

    def __init__(self, name: str) -> None:
        net = NETS[name]
        self.name = name
        self.input_kind = net.input_kind
        self.spectrogram = name in ("resnet18", "resnet34", "resnet50", "cnn-exits")
        kind = "log-mel spectrograms" if self.spectrogram else INPUT_TEXT[self.input_kind]
        self.description = f"{name}: torch net on {kind}"

    def load_dataset(self, store: FeatureStore, corpus: Corpus, tasks: Sequence[Task],
                     requests: Sequence[FeatureRequest], options: FitOptions) -> Dataset:
        """Vectors as usual, or the frame sequences of a sequence head (no vector field needed).

        Raises:
            FeatureError: the set or frame field is missing (says what to extract).
            ValueError: an invalid training option.
        """
        if self.input_kind == "vector":
            return build_dataset(store, corpus, tasks, requests)
        opts = TrainOptions.from_dict(options.head_options)
        return build_sequence_dataset(store, corpus, tasks, [r.features for r in requests],
                                      layer=requests[0].layer if requests else None,
                                      frames_field=opts.frames_field,
                                      max_memory_gb=opts.max_memory_gb)

    def fit(self, dataset: Dataset, tasks: Sequence[Task], *, seed: int, out_dir: Path,
            options: FitOptions) -> FitResult:
        """Train one model for every task (see :func:`heads.training.loop.fit_torch`)."""
        opts = TrainOptions.from_dict(options.head_options)
        preds, info, excluded = fit_torch(self.name, dataset, tasks, seed=seed, out_dir=out_dir,
                                          opts=opts, n_jobs=options.n_jobs,
                                          run_config=options.run_config,
                                          columns=options.columns)
        auxiliary = info.pop("auxiliary_outputs", {})
        curves = {k: v["curves"] for k, v in info.get("separate", {}).items()}
        if "curves" in info:
            curves["all"] = info["curves"]
        return FitResult(preds, info, excluded, curves=curves, per_task=False,
                         models=checkpoint_files(info), auxiliary=auxiliary)


def checkpoint_files(info: dict) -> dict[str, dict[str, str]]:
    """task -> target -> the checkpoint of one fit (one net, or one per output when separate)."""
    files: dict[str, dict[str, str]] = {}
    for name, out in info["outputs"].items():
        where = info["separate"][name] if "separate" in info else info
        files.setdefault(out["task"], {})[out["target"]] = where["checkpoint"]
    return files


for _name in NETS:
    register_head(TorchHead(_name))
