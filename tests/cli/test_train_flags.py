"""Every training option a run records (heads.config.TrainOptions, less the recipe-only ones)
has its `train` flag, and the flag's value reaches the run's options."""
from __future__ import annotations

from cli.cmd_train import TORCH_OPTIONS
from cli.main import build_parser


def _train_parser():
    parser = build_parser(["train"])
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return sub.choices["train"]


def test_every_training_option_has_a_train_flag():
    dests = {a.dest for a in _train_parser()._actions}
    missing = [k for k in TORCH_OPTIONS if k not in dests]
    assert not missing, f"TrainOptions fields without a train flag: {missing}"


def test_stop_on_loss_reaches_the_options():
    args = build_parser(["train"]).parse_args(
        ["train", "--workdir", "w", "--task", "exvo", "--features", "opensmile:eGeMAPSv02",
         "--head", "mlp-avb", "--stop-on", "loss"])
    assert args.stop_on == "loss"
    options = {k: getattr(args, k) for k in TORCH_OPTIONS if getattr(args, k, None) is not None}
    assert options == {"stop_on": "loss"}
