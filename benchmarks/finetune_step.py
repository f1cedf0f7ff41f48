"""``bench finetune-step``: the time of one fine-tuning optimiser step (stage 2's shape).

One step is what stage 2 of ``finetune`` does per batch: the backbone's masked mean of its
last hidden state (:class:`heads.finetune.backbone.Backbone`, bf16 autocast on CUDA), the
``mlp-mtl`` heads (:class:`heads.finetune.backbone.FinetuneHeads`), a loss, backward and an
AdamW step over the backbone (feature encoder frozen, :func:`heads.finetune.backbone.trainable_params`)
and the heads. The model is a random wav2vec2 of base size (or ``--size large``); the batch is
``--batch`` clips of ``--seconds`` each, drawn once. The loss is the mean squared error against
fixed random targets: the loss function's cost is nothing next to the backbone's.

Figures: seconds per step (median of the timed steps after ``--warmup`` untimed ones), audio
seconds trained per second, and on CUDA the peak memory.

Paper 004's heads (``ser``, on unless ``--no-ser``): the same batch through a step with the
emotion head alone (cross-entropy on the pooled output, 4 classes) and through a step with all
three heads (emotion + CTC over 32 symbols on the frame outputs, alpha 0.1, + a 9-speaker
classifier behind gradient reversal, :mod:`heads.finetune.auxiliary`), timed alternately in the
same run: seconds per step and per audio second of each, and their ratio.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--size", default="base", choices=["base", "large"], help="random wav2vec2 size")
    p.add_argument("--batch", type=int, default=8, help="clips per step (default 8)")
    p.add_argument("--seconds", type=float, default=4.0, help="seconds per clip (default 4)")
    p.add_argument("--steps", type=int, default=5, help="timed steps (default 5)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--ser", action=argparse.BooleanOptionalAction, default=True,
                   help="also time paper 004's step: emotion alone vs emotion + CTC + adversary")


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from transformers import AutoModel

    from extract.untrained import make_untrained_wav2vec2
    from heads.finetune.backbone import Backbone, FinetuneHeads
    from heads.finetune.batches import normalise_clip
    from heads.finetune.backbone import trainable_params

    if args.batch < 1 or args.steps < 1 or args.seconds <= 0:
        raise ValueError(f"--batch, --steps must be >= 1 and --seconds > 0; got {args.batch}, "
                         f"{args.steps}, {args.seconds}")
    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but torch sees no CUDA device; use --device cpu")
    device = torch.device("cuda" if cuda else "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_untrained_wav2vec2(Path(tmp) / "model", size=args.size)
        model = AutoModel.from_pretrained(folder).to(device)
    model.train()
    backbone = Backbone(model, do_normalize=True, use_mask=args.size == "large", min_samples=400,
                        layer=None, device=device)
    specs = [("valence", "regression", 2), ("emotion", "regression", 10)]
    heads = FinetuneHeads(model.config.hidden_size, specs, hidden=256, output="linear",
                          shared=False).to(device)
    params = trainable_params(model, freeze_feature_encoder=True) + list(heads.parameters())
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    rng = np.random.default_rng(0)
    n = int(args.seconds * 16000)
    waves = [normalise_clip(0.1 * rng.standard_normal(n).astype(np.float32), True, 400)
             for _ in range(args.batch)]
    targets = {name: torch.from_numpy(rng.standard_normal((args.batch, k)).astype(np.float32)).to(device)
               for name, _, k in specs}

    def step() -> float:
        pooled = backbone.pooled(waves)  # (B, H)
        with backbone.autocast():
            pred = heads(pooled)
        loss = sum(torch.nn.functional.mse_loss(pred[k].float(), t) for k, t in targets.items())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss.detach())  # one host sync per step, as the training loop has

    for _ in range(args.warmup):
        step()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times, losses = [], []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        losses.append(step())
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    per_step = statistics.median(times)
    out: dict[str, Any] = {
        "bench": "finetune-step", "model": f"random wav2vec2 {args.size}-size",
        "device": torch.cuda.get_device_name(device) if cuda else "cpu",
        "compute_dtype": "bfloat16-autocast" if cuda else "float32",
        "batch": args.batch, "seconds_per_clip": args.seconds, "steps_timed": args.steps,
        "seconds_per_step": round(per_step, 4),
        "audio_s_per_s": round(args.batch * args.seconds / per_step, 2),
        "trainable_parameters": sum(p.numel() for p in params),
        "loss_finite": bool(np.isfinite(losses).all()),
    }
    if cuda:
        out["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    if getattr(args, "ser", True):
        out["ser"] = _ser_steps(args, model, backbone, waves, device, cuda)
    return out


def _ser_steps(args: argparse.Namespace, model: Any, backbone: Any, waves: list, device: Any,
               cuda: bool) -> dict[str, Any]:
    """Emotion alone vs emotion + CTC + adversary on the same batch, steps interleaved."""
    import torch
    import torch.nn.functional as F

    from heads.ctc import SPECIALS, CharVocab
    from heads.finetune.auxiliary import AuxHeads, AuxTargets, aux_losses
    from heads.finetune.backbone import trainable_params
    from heads.nets import length_mask, masked_mean

    rng = np.random.default_rng(1)
    batch, hidden = len(waves), model.config.hidden_size
    vocab = CharVocab((*SPECIALS, *"abcdefghijklmnopqrstuvwxyz'012"))  # 32 symbols (V = 32)
    n_chars = max(1, int(14 * args.seconds))  # about 14 characters per second of speech
    encoded = [list(rng.integers(3, len(vocab), n_chars)) for _ in range(batch)]
    targets = AuxTargets(vocab, ["x"] * batch, encoded, "speaker", tuple(f"s{i}" for i in range(9)),
                         rng.integers(0, 9, batch).astype(np.int64))
    emotion = torch.nn.Linear(hidden, 4).to(device)
    aux = AuxHeads(hidden, vocab_size=len(vocab), n_classes=9, beta=1.0, mode="reverse").to(device)
    labels = torch.as_tensor(rng.integers(0, 4, batch), device=device)
    params = trainable_params(model, freeze_feature_encoder=True)
    optimizer = torch.optim.AdamW(params + list(emotion.parameters()) + list(aux.parameters()), lr=1e-5)
    rows, whole = list(range(batch)), [True] * batch

    def step(all_heads: bool) -> float:
        h, frames = backbone.frames(waves)  # (B, T, H), (B,)
        pooled = masked_mean(h, length_mask(frames, h.shape[1]))
        loss = F.cross_entropy(emotion(pooled), labels)
        if all_heads:
            extra = aux_losses(aux, targets, h, frames, pooled, rows, whole)
            loss = loss + 0.1 * extra.ctc + extra.adversary
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    for _ in range(args.warmup):
        step(False)
        step(True)
    times: dict[bool, list[float]] = {False: [], True: []}
    finite = True
    for _ in range(args.steps):
        for all_heads in (False, True):
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            finite &= bool(np.isfinite(step(all_heads)))
            if cuda:
                torch.cuda.synchronize()
            times[all_heads].append(time.perf_counter() - t0)
    audio = batch * args.seconds
    alone, three = (statistics.median(times[k]) for k in (False, True))
    return {"heads_alone": "emotion (cross-entropy on the pooled output)",
            "heads_all": "emotion + CTC (V=32, alpha 0.1, on the frames) + speaker adversary (9, reversed)",
            "emotion_seconds_per_step": round(alone, 4),
            "all_heads_seconds_per_step": round(three, 4),
            "emotion_seconds_per_audio_second": round(alone / audio, 5),
            "all_heads_seconds_per_audio_second": round(three / audio, 5),
            "all_heads_over_emotion": round(three / alone, 3), "ctc_chars_per_clip": n_chars,
            "loss_finite": finite}
