"""The torch training loop, read top to bottom: :func:`fit_torch` -> :func:`train_net`.

What a fit does:

1. options: :class:`heads.config.TrainOptions` (validated by the caller);
2. outputs (:mod:`heads.training.outputs`): one net output per target of every task
   (``avb-high`` -> ``high``; ``exvo`` -> ``emotion``, ``country``, ``age``), each with its
   loss (CCC, MSE, MAE or cross-entropy with normalised inverse-frequency class weights and
   label smoothing);
3. inputs (:mod:`heads.training.inputs`): vectors standardised with the Train mean / std, or
   frame sequences (:mod:`heads.sequences`) standardised per dimension over the Train frames
   and padded per batch;
4. the loop: shuffled mini-batches (a seeded generator), per-output losses combined by the
   weighting strategy, Adam / AdamW, optional cosine schedule with warm-up; after each epoch
   the Val headline score of every task, the task weights and the losses go to the log and to
   ``curves_seed<k>.json``; early stopping on the mean Val headline (MAE counts negated) with
   patience, or on the Val loss (``stop_on = "loss"``, :func:`weighted_val_loss`); the best state is restored and saved to ``model_seed<k>.pt``
   (:mod:`heads.training.checkpoint`).

Logging: one INFO line per net when it is trained; each epoch's line is a progress record
(``extra={"progress": {"key", "done", "total", "unit", "finished"}}``), which the command line
draws as a bar on a terminal (every line at ``-vv``), and libraries see as an ordinary record.

Same seed, same data, CPU: the same numbers (``torch.manual_seed`` for the weights, a
``torch.Generator`` for the batch order). CUDA is used when present (``device="auto"``); on
the CPU, training uses ``n_jobs`` intra-op threads (``train --jobs``, default 1: on a busy
2-core machine more threads made small steps several times slower), restored afterwards.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from data.tasks import Task
from heads.config import TrainOptions
from heads.dataset import Dataset
from heads.nets import NETS, build_net
from heads.rundir import write_json
from heads.training.auxiliary import Auxiliary, check_auxiliary
from heads.training.checkpoint import save_checkpoint
from heads.training.inputs import Inputs, load_inputs, pick_device
from heads.training.outputs import (Labels, Output, make_outputs, output_losses, resolve_chain,
                                    selection_score, to_label_space, train_class_weights,
                                    val_scores)
from heads.training.weighting import build_weighting

log = logging.getLogger(__name__)

EVAL_BATCH_VECTORS = 8192

TorchFit = tuple[dict[str, dict[str, np.ndarray]], dict[str, Any], dict[str, dict[str, int]]]
"""``(predictions[task][target], info, excluded[task][target])``."""


def fit_torch(head: str, ds: Dataset, tasks: Sequence[Task], *, seed: int, out_dir: Path,
              opts: TrainOptions, n_jobs: int = 1,
              run_config: dict[str, Any] | None = None,
              columns: dict[str, list] | None = None) -> TorchFit:
    """Train a torch head on all tasks at once.

    Args:
        head: a key of :data:`heads.nets.NETS`.
        ds: aligned ids, splits, features and labels (a
            :class:`~heads.dataset.SequenceDataset` for a sequence head).
        tasks: the resolved tasks.
        seed: seeds the weights and the batch order.
        out_dir: where curves and checkpoints go (created).
        opts: the training options.
        n_jobs: CPU threads while training on the CPU.
        run_config: the run's settings, saved in each checkpoint.
        columns: per-row labels of the auxiliary heads (``opts.adversary`` / ``opts.ctc``:
            :func:`heads.auxiliary.auxiliary_columns`).

    Returns:
        ``(preds, info, excluded)``: ``preds[task][target]`` for every row of ``ds``
        (regression (n, k) float32, classification (n,) class codes); ``info`` with the best
        epoch, epochs run, final task weights, options; ``excluded[task][target]``: Train and
        Val clips without that label. With auxiliary heads, ``info["auxiliary_outputs"]``
        holds their per-row outputs (:meth:`heads.training.auxiliary.Auxiliary.predict`).

    Raises:
        ValueError: unknown head or option, no Train labels, CUDA asked for but missing, a
            sequence head without frame sequences.
    """
    if head not in NETS:
        raise ValueError(f"unknown torch head {head!r}; valid: {', '.join(sorted(NETS))}")
    check_auxiliary(head, opts)
    device = pick_device(opts.device)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs = make_outputs(tasks, ds, ds.rows("Train"), opts)
    inputs = load_inputs(ds, NETS[head].input_kind, device)
    labels = Labels(outputs, ds, device)

    if device.type == "cpu":  # --jobs: small ops on a busy CPU get slower with more threads
        threads_before = torch.get_num_threads()
        torch.set_num_threads(max(1, int(n_jobs)))
    try:
        return _fit_groups(head, opts, ds, tasks, seed, outputs, inputs, labels, device, out_dir,
                           run_config or {}, columns or {})
    finally:
        if device.type == "cpu":
            torch.set_num_threads(threads_before)


def _fit_groups(head: str, opts: TrainOptions, ds: Dataset, tasks: Sequence[Task], seed: int,
                outputs: list[Output], inputs: Inputs, labels: Labels, device: torch.device,
                run_dir: Path, run_config: dict[str, Any], columns: dict[str, list]) -> TorchFit:
    """Train one net (or one per output when ``separate``) and collect predictions."""
    groups = [[o] for o in outputs] if opts.separate else [list(outputs)]
    if opts.separate and opts.weighting != "equal":
        # one loss per net: a weighting has nothing to balance (and fixed:w1,..,wK needs K)
        log.info("separate nets: weighting %r is not used (one loss per net)", opts.weighting)
        opts = dataclasses.replace(opts, weighting="equal")
    raw: dict[str, np.ndarray] = {}
    infos: dict[str, Any] = {}
    for group in groups:
        tag = f"seed{seed}" if not opts.separate else f"seed{seed}_{group[0].name}"
        result = train_net(head, opts, ds, tasks, group, inputs, labels, seed, device=device,
                           run_dir=run_dir, tag=tag, run_config=run_config, columns=columns)
        raw.update(result.raw)
        infos[group[0].name if opts.separate else "all"] = result.info

    preds: dict[str, dict[str, np.ndarray]] = {t.name: {} for t in tasks}
    for o in outputs:
        preds[o.task][o.target.name] = to_label_space(o, raw[o.name])
    excluded: dict[str, dict[str, int]] = {}
    tv = np.concatenate([ds.rows("Train"), ds.rows("Val")])
    for o in outputs:
        missing = int((~labels.valid_rows(o.name)[tv]).sum())
        excluded.setdefault(o.task, {})[o.target.name] = missing
    info: dict[str, Any] = {"head": head, "seed": seed, "options": dataclasses.asdict(opts),
                            "outputs": {o.name: {"task": o.task, "target": o.target.name, "loss": o.loss}
                                        for o in outputs}}
    info.update(infos["all"] if not opts.separate else {"separate": infos})
    if not opts.separate and result.aux is not None:
        info["auxiliary_outputs"] = result.aux
    return preds, info, excluded


@dataclass
class TrainResult:
    """What :func:`train_net` returns: raw predictions for every row and a summary."""

    raw: dict[str, np.ndarray]
    info: dict[str, Any]
    aux: dict[str, Any] | None = None


def lr_factor(step: int, *, total_steps: int, warmup_steps: int, schedule: str) -> float:
    """Learning-rate multiplier at ``step``: linear warm-up, then constant or cosine to 0.

    Example:
        >>> [round(lr_factor(s, total_steps=4, warmup_steps=2, schedule="cosine"), 2) for s in range(4)]
        [0.5, 1.0, 1.0, 0.5]
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "none":
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


@torch.no_grad()
def predict_raw(net: torch.nn.Module, inputs: Inputs, rows: np.ndarray, batch_size: int
                ) -> dict[str, np.ndarray]:
    """Net outputs (regression after the output mode, logits) for ``rows``, in row order."""
    net.eval()
    chunks: dict[str, list[np.ndarray]] = {name: [] for name, _, _ in net.tasks}
    for lo in range(0, len(rows), batch_size):
        out = net(*inputs.batch(rows[lo:lo + batch_size]))
        for name, value in out.items():
            chunks[name].append(value.float().cpu().numpy())
    return {name: (np.concatenate(c) if c else np.zeros((0, k), np.float32))
            for (name, _, k), c in zip(net.tasks, chunks.values())}


def weighted_val_loss(outputs: Sequence[Output], raw_val: dict[str, np.ndarray], labels: Labels,
                      val_rows: np.ndarray, class_weights: dict[str, torch.Tensor | None],
                      label_smoothing: float, task_weights: Sequence[float],
                      device: torch.device) -> float:
    """The Val loss that ``stop_on = "loss"`` follows: each output's loss on the whole Val
    split (the Train losses' own definitions: CCC / MSE / MAE, class-weighted cross-entropy),
    summed with the weighting's current task weights (its regularising terms left out). NaN
    when Val is empty."""
    if len(val_rows) == 0:
        return float("nan")
    rows = torch.as_tensor(val_rows, device=device)
    pred = {o.name: torch.as_tensor(raw_val[o.name], device=device) for o in outputs}
    with torch.no_grad():
        losses = output_losses(outputs, pred, labels, rows, class_weights, label_smoothing)  # (K,)
        w = torch.as_tensor(list(task_weights), dtype=losses.dtype, device=device)
        return float((w * losses).sum())


def train_net(head: str, opts: TrainOptions, ds: Dataset, tasks: Sequence[Task],
              outputs: Sequence[Output], inputs: Inputs, labels: Labels, seed: int, *,
              device: torch.device, run_dir: Path, tag: str,
              run_config: dict[str, Any] | None = None,
              columns: dict[str, list] | None = None) -> TrainResult:
    """Train one net for ``outputs`` and return its predictions on every row.

    With ``opts.adversary`` / ``opts.ctc`` the auxiliary heads
    (:class:`heads.training.auxiliary.Auxiliary`) train beside the net on ``columns``; their
    weighted losses are added to the total.

    Writes ``run_dir/curves_<tag>.json`` after every epoch and ``run_dir/model_<tag>.pt`` (best
    state, net config, options, input standardisation, label ranges, ``run_config``) at the end.
    """
    t0 = time.perf_counter()
    names = [o.name for o in outputs]
    train_rows = ds.rows("Train")
    has_label = np.zeros(len(ds.ids), dtype=bool)
    for o in outputs:
        has_label |= labels.valid_rows(o.name)
    train_rows = train_rows[has_label[train_rows]]  # clips without any label teach nothing
    val_rows = ds.rows("Val")
    if len(train_rows) == 0:
        raise ValueError(f"outputs {names}: no Train clip has a label")

    # model, weighting, optimiser, schedule
    torch.manual_seed(seed)
    net_options = dict(opts.net)
    if opts.output is not None:
        net_options["output"] = opts.output
    if opts.chain:
        if head != "mlp-mtl":
            raise ValueError(f"option chain needs head mlp-mtl; got head {head!r}")
        net_options["chain"] = resolve_chain(opts.chain, outputs)
    unscaled = [o.name for o in outputs if o.kind != "classification"
                and (o.target.name in opts.unscaled or o.task in opts.unscaled)]
    net = build_net(head, inputs.dim, [o.spec() for o in outputs], **net_options).to(device)
    wrong = [n for n in unscaled if net.output_mode(n) != "linear"]
    if wrong:
        raise ValueError(f"option unscaled trains {', '.join(opts.unscaled)} in label units: head "
                         f"{head} outputs {net.output_mode(wrong[0])!r} for {', '.join(wrong)}; "
                         "add --output linear"
                         + (f" (or --net linear_outputs={','.join(wrong)}: a linear output for "
                            "those alone)" if "linear_outputs" in
                            {f.name for f in dataclasses.fields(NETS[head].config_type)} else ""))
    weighting = build_weighting(opts.weighting, len(outputs)).to(device)
    aux = None
    if opts.adversary is not None or opts.ctc is not None:
        aux = Auxiliary(head, net, opts, ds, columns or {}, device, run_dir).to(device)
    groups = [{"params": list(net.parameters()), "weight_decay": opts.weight_decay}]
    if aux is not None:
        groups.append({"params": list(aux.parameters()), "weight_decay": opts.weight_decay})
    if list(weighting.parameters()):
        groups.append({"params": list(weighting.parameters()), "weight_decay": 0.0})
    optim_cls = torch.optim.AdamW if opts.optimizer == "adamw" else torch.optim.Adam
    # foreach: one fused update for all parameters (torch only defaults to it on CUDA)
    optimizer = optim_cls(groups, lr=opts.lr, foreach=True)
    steps_per_epoch = math.ceil(len(train_rows) / opts.batch_size)
    total_steps = steps_per_epoch * opts.epochs
    warmup_steps = int(round(opts.warmup * steps_per_epoch))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(
        step, total_steps=total_steps, warmup_steps=warmup_steps, schedule=opts.schedule))
    class_weights = train_class_weights(outputs, ds, train_rows, device, opts.class_weights)
    generator = torch.Generator().manual_seed(seed)
    eval_batch = EVAL_BATCH_VECTORS if inputs.kind == "vector" else max(64, 2 * opts.batch_size)
    log.debug("%s %s: %d parameters, %d Train / %d Val clips, %d steps per epoch, device %s",
             head, tag, sum(p.numel() for p in net.parameters()), len(train_rows),
             len(val_rows), steps_per_epoch, device)

    curves: dict[str, Any] = {"outputs": names, "epoch": [], "train_loss": {n: [] for n in names},
                              "train_total": [], "val_score": {}, "val_selection": [],
                              "task_weights": {n: [] for n in names}, "lr": [], "seconds": []}
    if aux is not None:
        curves["auxiliary_loss"] = {n: [] for n in aux.names}
    best_score, best_epoch, best_state, epochs_run = None, -1, None, 0
    best_loss: float | None = None
    train_rows_t = torch.as_tensor(train_rows)
    for epoch in range(opts.epochs):
        # ---- one pass over Train in a seeded random order
        net.train()
        order = train_rows_t[torch.randperm(len(train_rows), generator=generator)]
        loss_sum = torch.zeros(len(outputs), device=device)
        total_sum = torch.zeros((), device=device)
        aux_sum = torch.zeros(len(aux.names) if aux is not None else 0, device=device)
        for start in range(0, len(order), opts.batch_size):
            rows = order[start:start + opts.batch_size]
            pred = net(*inputs.batch(rows))  # {output: (B, k)}
            rows_dev = rows.to(device)
            losses = output_losses(outputs, pred, labels, rows_dev, class_weights,
                                   opts.label_smoothing)  # (K,)
            total = weighting.combine(losses, epoch)
            if aux is not None:  # L = L_tasks + alpha L_CTC + beta L_adversary (seed 004, III.D)
                aux_terms = aux.losses(net, rows)  # (A,)
                total = total + aux_terms.sum()
                aux_sum += aux_terms.detach()
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            scheduler.step()
            loss_sum += losses.detach()
            total_sum += total.detach()
        epoch_losses = (loss_sum / steps_per_epoch).tolist()
        weighting.end_epoch(epoch_losses)
        epochs_run = epoch + 1

        # ---- Val scores, curves, early stopping
        raw_val = predict_raw(net, inputs, val_rows, eval_batch)
        preds_val = {o.name: to_label_space(o, raw_val[o.name]) for o in outputs}
        scores = val_scores(outputs, tasks, ds, val_rows, preds_val)
        selection = selection_score(scores)
        task_weights = weighting.weights()
        curves["epoch"].append(epoch)
        for n, v in zip(names, epoch_losses):
            curves["train_loss"][n].append(v)
        curves["train_total"].append(float(total_sum) / steps_per_epoch)
        for n, (s, _) in scores.items():
            curves["val_score"].setdefault(n, []).append(s)
        curves["val_selection"].append(selection)
        for n, w in zip(names, task_weights):
            curves["task_weights"][n].append(float(w))
        if aux is not None:
            for n, v in zip(aux.names, (aux_sum / steps_per_epoch).tolist()):
                curves["auxiliary_loss"][n].append(v)
        curves["lr"].append(optimizer.param_groups[0]["lr"])
        curves["seconds"].append(round(time.perf_counter() - t0, 3))
        if opts.stop_on == "loss":  # the organisers' ExVo baseline: the lowest Val loss
            val_loss = weighted_val_loss(outputs, raw_val, labels, val_rows, class_weights,
                                         opts.label_smoothing, task_weights, device)
            curves.setdefault("val_loss", []).append(val_loss)
            better = best_loss is None or val_loss < best_loss
        else:
            better = best_score is None or selection > best_score
        if better:
            best_score, best_epoch, bad_epochs = selection, epoch, 0
            if opts.stop_on == "loss":
                best_loss = val_loss
            best_state = {"net": copy.deepcopy(net.state_dict()),
                          "weighting": copy.deepcopy(weighting.state_dict())}
            if aux is not None:
                best_state["auxiliary"] = copy.deepcopy(aux.state_dict())
        else:
            bad_epochs += 1
        curves["best_epoch"] = best_epoch
        write_json(run_dir / f"curves_{tag}.json", curves, indent=1)
        stop = opts.patience > 0 and bad_epochs >= opts.patience
        # a progress record (see the module docstring): a bar on a terminal, not a line each
        log.info("epoch %d/%d %s: loss %s | Val %s | weights %s", epoch + 1, opts.epochs, tag,
                 " ".join(f"{n} {v:.4f}" for n, v in zip(names, epoch_losses)),
                 " ".join(f"{n} {s:.4f}" for n, (s, _) in scores.items()),
                 " ".join(f"{n} {w:.3f}" for n, w in zip(names, task_weights)),
                 extra={"progress": {"key": f"{head} {tag}", "done": epoch + 1,
                                     "total": opts.epochs, "unit": "epoch", "finished": stop}})
        if stop:
            log.debug("%s: no better Val %s for %d epochs; stopping after epoch %d (best %d)",
                      tag, opts.stop_on, opts.patience, epoch + 1, best_epoch + 1)
            break

    # ---- restore the best state, predict every row, save the checkpoint
    if opts.restore_best and best_state is not None:
        net.load_state_dict(best_state["net"])
        weighting.load_state_dict(best_state["weighting"])
        if aux is not None:
            aux.load_state_dict(best_state["auxiliary"])
    log.info("%s %s: %d epoch(s)%s, best epoch %d (Val selection score %.4f), %.1f s on %s",
             head, tag, epochs_run, " (stopped early)" if epochs_run < opts.epochs else "",
             best_epoch + 1, best_score if best_score is not None else float("nan"),
             time.perf_counter() - t0, device)
    raw = predict_raw(net, inputs, np.arange(len(ds.ids)), eval_batch)
    aux_out = None
    if aux is not None:
        every = np.arange(len(ds.ids))
        aux_out = aux.predict(net, (inputs.batch(every[lo:lo + eval_batch])
                                    for lo in range(0, len(every), eval_batch)))
        aux.probe(aux_out, train_rows)
    final_weights = dict(zip(names, (float(w) for w in weighting.weights())))
    info = {"best_epoch": best_epoch, "epochs_run": epochs_run,
            "stopped_early": epochs_run < opts.epochs, "best_val_selection": best_score,
            "task_weights": final_weights, "train_clips": int(len(train_rows)),
            "device": str(device), "seconds": round(time.perf_counter() - t0, 3),
            "curves": f"curves_{tag}.json", "checkpoint": f"model_{tag}.pt"}
    save_checkpoint(run_dir / f"model_{tag}.pt", net=net, weighting=weighting, head=head,
                    inputs=inputs, outputs=outputs, opts=opts, run_config=run_config or {},
                    seed=seed, best_epoch=best_epoch, epochs_run=epochs_run,
                    auxiliary=aux.state() if aux is not None else None)
    return TrainResult(raw, info, aux_out)



__all__ = ["fit_torch", "train_net", "TrainResult", "lr_factor", "predict_raw", "EVAL_BATCH_VECTORS"]
