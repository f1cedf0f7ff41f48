"""The per-layer CTC probe (``probe --task text``): where spoken content lives in a model.

For every stored frame layer (``frames_l<k>``, stored by ``extract --frames-layers``) a linear
CTC head (:class:`heads.ctc.CTCHead`: seed 004's "simple linear projection from z to y", III.B)
is trained on the Train clips' frames, standardised per dimension over the Train frames
(:func:`heads.sequences.fit_frame_stats`), with the character vocabulary of the Train
transcripts (:class:`heads.ctc.CharVocab`). The epoch with the lowest Val CER is kept (patience
5). Reported per layer, as the other probes: the Val CER (mean over seeds; lower is better),
its 95 % percentile bootstrap CI over Val clips (the same resamples for every layer; a
resample's CER is its clips' character edits over their reference characters, the
corpus-level CER of :func:`heads.scoring.character_error`), the std over seeds, the Test CER,
and the Val WER. Seeds change the head's initialisation and the batch order.

The probe's training settings (Adam, lr 3e-3, batch 16) are ours; ``epochs`` is the study's
``weighted.epochs`` (``probe --epochs``).
"""
from __future__ import annotations

import copy
import datetime as _dt
import logging
import re
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from data.hints import extract_command
from extract.store import FeatureStore
from heads.ctc import CharVocab, CTCConfig, CTCHead, normalise_transcript, pad_targets
from heads.features import FeatureError, find_set
from heads.probe.study import (
    PROBES_DIR,
    ProbeConfig,
    ProbeResult,
    Progress,
    best_record,
    write_probe,
)
from heads.rundir import jsonable, make_run_dir
from heads.scoring import (
    CI_LEVEL,
    Resamples,
    character_error,
    percentile_ci,
    word_error,
)
from heads.sequences import fit_frame_stats, load_sequences, pad_batch, ragged_fields

log = logging.getLogger(__name__)

TEXT_TASK = "text"
FRAMES = re.compile(r"^frames_l(\d+)$")
LR, BATCH, PATIENCE = 3e-3, 16, 5


def frame_layers(header: Any) -> dict[int, str]:
    """Layer -> ragged field of the set's per-layer frames (``frames_l<k>``)."""
    return {int(m.group(1)): f for f in ragged_fields(header) if (m := FRAMES.match(f))}


def _needs_frames(header: Any) -> None:
    if not frame_layers(header):
        raise FeatureError(f"{header.key} stores no per-layer frames (frames_l<k>)")


def clip_edits(references: list[str], hypotheses: list[str]) -> np.ndarray:
    """Character edits of each pair (its CER times its reference length), (n,)."""
    return np.array([character_error(r, h) * len(r) for r, h in zip(references, hypotheses)])


def _train_layer(seqs: Any, rows: dict[str, np.ndarray], targets: list[list[int]], vocab: CharVocab,
                 refs: list[str], seed: int, epochs: int) -> tuple[list[str], int]:
    """One seed of one layer: the hypotheses of every row and the chosen epoch."""
    import torch

    mean, std = fit_frame_stats(seqs, rows["Train"])
    torch.manual_seed(seed)
    head = CTCHead(CTCConfig(in_dim=seqs.dim, vocab_size=len(vocab)))
    opt = torch.optim.Adam(head.parameters(), lr=LR)
    gen = torch.Generator().manual_seed(seed)
    every = np.arange(len(seqs))

    def decode(which: np.ndarray) -> list[str]:
        head.eval()
        out: list[str] = []
        with torch.no_grad():
            for lo in range(0, len(which), 64):
                x, lengths = pad_batch(seqs, which[lo:lo + 64], mean, std)
                ids = head.decode(head(torch.from_numpy(x)), torch.from_numpy(lengths))
                out += [vocab.decode(i) for i in ids]
        return out

    train = rows["Train"]
    best, best_epoch, best_state, bad = None, -1, None, 0
    for epoch in range(epochs):
        head.train()
        order = train[torch.randperm(len(train), generator=gen).numpy()]
        for lo in range(0, len(order), BATCH):
            b = order[lo:lo + BATCH]
            x, lengths = pad_batch(seqs, b, mean, std)
            tg, tl = pad_targets([targets[i] for i in b])
            loss = head.loss(head(torch.from_numpy(x)), torch.from_numpy(lengths), tg, tl)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        cer = character_error([refs[i] for i in rows["Val"]], decode(rows["Val"]))
        if best is None or cer < best:
            best, best_epoch, best_state, bad = cer, epoch, copy.deepcopy(head.state_dict()), 0
        else:
            bad += 1
            if bad >= PATIENCE:
                break
    head.load_state_dict(best_state)
    return decode(every), best_epoch


def run_text_probe(cfg: ProbeConfig, *, progress: Progress | None = None) -> ProbeResult:
    """Train a linear CTC probe on every stored frame layer; write ``probes/<name>/``.

    Raises:
        FeatureError: the set stores no per-layer frames (gives the extract command).
        ValueError: the corpus has no transcripts, or Train / Val have none.
    """
    from data.workdir import open_corpus

    t0 = time.perf_counter()
    store = FeatureStore(cfg.workdir)
    header = find_set(store, cfg.features, [_needs_frames, lambda h: None])
    fields = frame_layers(header)
    if not fields:
        pooled = sorted({k for f in header.fields.values() for k in f.attrs.get("layers", [])})
        wanted = list(cfg.layers or pooled or [12])
        raise FeatureError(
            f"probe --task text needs per-layer frame sequences, but {header.key} stores none "
            f"(ragged fields: {ragged_fields(header)}). Store them with "
            f"`{extract_command(cfg.workdir, header.spec, frames_layers=wanted)}`.")
    layers = sorted(fields) if cfg.layers is None else list(cfg.layers)
    missing = [k for k in layers if k not in fields]
    if missing:
        raise FeatureError(f"frame layer(s) {missing} are not stored in {header.key}; stored: "
                           f"{sorted(fields)}. Store them with "
                           f"`{extract_command(cfg.workdir, header.spec, frames_layers=missing)}`.")
    corpus = open_corpus(cfg.workdir, need_split=True)
    if "text" not in corpus.labels.columns:
        raise ValueError(f"probe --task text: the {corpus.layout} corpus at {corpus.root} has no "
                         f"text column of transcripts (a csv corpus names it with extract "
                         f"--text-column COL)")
    clips = corpus.clips[corpus.clips["split"].isin(["Train", "Val", "Test"])]
    text = corpus.labels["text"].reindex(clips.index)
    ids = [c for c in clips.index if isinstance(text[c], str) and normalise_transcript(text[c])]
    split = clips.loc[ids, "split"].to_numpy()
    refs = [normalise_transcript(text[c]) for c in ids]
    for s in ("Train", "Val"):
        if not (split == s).any():
            raise ValueError(f"probe --task text: no {s} clip has a transcript")
    vocab = CharVocab.from_texts([r for r, s in zip(refs, split) if s == "Train"])
    name = cfg.name or (f"{_dt.datetime.now():%Y%m%d-%H%M%S}-text-ctc-{header.name}")
    probe_dir = Path(cfg.workdir) / PROBES_DIR / name
    make_run_dir(probe_dir, result="probe.json")
    vocab.save(probe_dir / "vocab.json")
    results: list[dict[str, Any]] = []
    resamples = None
    epochs = cfg.weighted.epochs
    for done, layer in enumerate(layers, start=1):
        seqs, present, _ = load_sequences(store, [cfg.features], ids, frames_field=fields[layer])
        keep = np.flatnonzero(present)
        sub = seqs if len(keep) == len(ids) else _subset(seqs, keep)
        sp = split[keep]
        rows = {s: np.flatnonzero(sp == s) for s in ("Train", "Val", "Test")}
        layer_refs = [refs[i] for i in keep]
        targets = [vocab.encode(r) for r in layer_refs]
        if resamples is None:
            resamples = Resamples(len(rows["Val"]), cfg.n_boot, cfg.boot_seed)
        hyps, chosen = [], []
        for seed in range(cfg.seeds):
            h, e = _train_layer(sub, rows, targets, vocab, layer_refs, seed, epochs)
            hyps.append(h)
            chosen.append(e)
        results.append({"layer": layer, "pooling": "frames",
                        **_summarise(layer_refs, hyps, rows, resamples), "best_epoch": chosen})
        log.debug("text probe L%d: Val CER %.4f", layer, results[-1]["score"])
        if progress:
            progress(done, len(layers), f"L{layer}")
    best = best_record(results, greater=False)
    summary = {
        "name": name, "kind": "probe", "config": jsonable(asdict(cfg)),
        "feature_set": {"key": header.key, "spec": header.spec, "name": header.name,
                        "model": header.config.get("model"), "fields": fields},
        "task": TEXT_TASK, "metric": "cer",
        "metric_text": "character error rate of a linear CTC head, greedy decoding (lower is better)",
        "greater_is_better": False,
        "ci_method": f"{int(CI_LEVEL * 100)} % percentile bootstrap over Val clips of the "
                     f"seed-mean CER ({cfg.n_boot} resamples, the same for every layer)",
        "seed_meaning": "seeds change the CTC head's initialisation and the batch order",
        "std_meaning": "standard deviation of the Val CER over seeds (ddof=1)",
        "training": {"head": "linear CTC (heads.ctc.CTCHead)", "optimizer": "adam", "lr": LR,
                     "batch_size": BATCH, "epochs": epochs, "patience": PATIENCE,
                     "selection": "lowest Val CER"},
        "vocab": {"file": "vocab.json", "size": len(vocab)},
        "n_clips": {s: int((split == s).sum()) for s in ("Train", "Val", "Test")},
        "excluded_missing_features": int(len(clips) - len(ids)),
        "layers": layers, "poolings": ["frames"], "results": results, "best": best,
        "weighted_sum": {},
        "seconds": round(time.perf_counter() - t0, 3),
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
    }
    write_probe(summary, probe_dir)
    return ProbeResult(probe_dir, summary)


def _subset(seqs: Any, keep: np.ndarray) -> Any:
    from heads.sequences import InMemorySequences

    return InMemorySequences.from_arrays(seqs.rows(keep), dim=seqs.dim)


def _summarise(refs: list[str], hyps: list[list[str]], rows: dict[str, np.ndarray],
               resamples: Resamples) -> dict[str, Any]:
    va, te = rows["Val"], rows["Test"]
    ref_va = [refs[i] for i in va]
    lens = np.array([len(r) for r in ref_va], dtype=np.float64)
    edits = [clip_edits(ref_va, [h[i] for i in va]) for h in hyps]
    scores = [character_error(ref_va, [h[i] for i in va]) for h in hyps]
    boot = resamples.apply(lambda W: np.mean([(W @ e) / (W @ lens) for e in edits], axis=0))
    out: dict[str, Any] = {
        "score": float(np.mean(scores)), "ci": list(percentile_ci(boot)),
        "std": float(np.std(scores, ddof=1)) if len(scores) > 1 else 0.0,
        "seed_scores": [float(s) for s in scores],
        "wer": float(np.mean([word_error(ref_va, [h[i] for i in va]) for h in hyps])),
    }
    if len(te):
        ref_te = [refs[i] for i in te]
        test = [character_error(ref_te, [h[i] for i in te]) for h in hyps]
        out["test_score"] = float(np.mean(test))
        out["test_std"] = float(np.std(test, ddof=1)) if len(test) > 1 else 0.0
        out["test_seed_scores"] = [float(s) for s in test]
        out["test_wer"] = float(np.mean([word_error(ref_te, [h[i] for i in te]) for h in hyps]))
    return out


__all__ = ["TEXT_TASK", "clip_edits", "frame_layers", "run_text_probe"]
