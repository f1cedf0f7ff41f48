"""Training of the torch heads: the loop (:mod:`.loop`), losses (:mod:`.losses`), multitask
weighting (:mod:`.weighting`), outputs and labels (:mod:`.outputs`), inputs (:mod:`.inputs`),
checkpoints (:mod:`.checkpoint`) and the registered torch heads (:mod:`.head`)."""
from __future__ import annotations

from heads.training.checkpoint import load_checkpoint, save_checkpoint
from heads.training.head import TorchHead
from heads.training.inputs import Inputs, load_inputs, pick_device
from heads.training.loop import TrainResult, fit_torch, lr_factor, predict_raw, train_net
from heads.training.outputs import (Labels, Output, make_outputs, output_losses, resolve_chain,
                                    selection_score, to_label_space, train_class_weights,
                                    val_scores)

__all__ = ["TorchHead", "fit_torch", "train_net", "TrainResult", "lr_factor", "predict_raw",
           "Inputs", "load_inputs", "pick_device", "Labels", "Output", "make_outputs",
           "output_losses", "resolve_chain", "selection_score", "to_label_space",
           "train_class_weights", "val_scores", "load_checkpoint", "save_checkpoint"]
