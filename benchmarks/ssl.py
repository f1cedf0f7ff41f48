"""``bench ssl``: our SSL extraction against what common tools do, measured in the same run.

(a) ours: wav files on disk -> all hidden states x (mean, last) pooled on true frames -> the
    crash-safe store (decoding workers, batching, float16 storage);
(b) naive: one clip at a time through ``transformers`` with ``output_hidden_states=True``,
    keeping one layer's mean (what most scripts do), results kept in memory;
(c) a layer-probing study: the naive way needs one full pass per layer; ours needs one pass.

By default the model is a randomly initialised wav2vec2 of base size (the compute of the real
``facebook/wav2vec2-base``; ``--size large``: wav2vec2-large-lv60's), so the benchmark runs
anywhere; ``--model`` takes a real one. On CPU it also reports the compute-bound limit estimated
from a measured matmul rate; on GPU the fraction of the measured bf16 matmul peak that the
pipeline reaches and the real-time factor.

(d) agreement: for ``--check-clips`` clips, every stored layer x (mean, last) against the
    model's own forward on the clip alone (float32; on CUDA also under the same bf16 autocast):
    the minimum cosine over clips, layers and poolings.

(e) families: ``--family-clips`` clips (in memory, the extractor's own batches) through random
    base-size encoders of each family in the same run: wav2vec2, Whisper's encoder (the
    model's own padded 30 s input, and ``--whisper-input trimmed``) and w2v-BERT 2.0, as
    audio seconds per second and ratios to wav2vec2 (0 skips it).

``--naive-clips`` times the naive loop on the first N clips only (a GPU run extracts thousands
of clips in seconds, the naive loop would take minutes); the ratios then compare rates (audio
seconds per second) and say so.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--clips", type=int, default=64, help="clips (default 64)")
    p.add_argument("--min-seconds", type=float, default=0.5)
    p.add_argument("--max-seconds", type=float, default=4.0)
    p.add_argument("--model", help="model id or folder (default: a random wav2vec2 of --size)")
    p.add_argument("--size", default="base", choices=["base", "large"],
                   help="size of the random wav2vec2 when no --model is given (default base)")
    p.add_argument("--naive-clips", type=int, default=None,
                   help="time the naive loop on the first N clips only (default: all)")
    p.add_argument("--check-clips", type=int, default=8,
                   help="clips whose stored values are compared with the per-clip forward (default 8)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--naive-passes", type=int, default=None,
                   help="full naive passes timed for the probing study (default: one per layer, "
                        "all measured); fewer are extrapolated and said so")
    p.add_argument("--batch-seconds", type=float, default=64.0)
    p.add_argument("--family-clips", type=int, default=8,
                   help="clips timed through each family's random base-size encoder (default 8; 0 skips)")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))


def _flops_per_audio_second(cfg: Any) -> float:
    """Multiply-adds x 2 of one second of 16 kHz audio through conv encoder + transformer."""
    n = 16000
    flops = 0.0
    ch_in = 1
    for ch, k, s in zip(cfg.conv_dim, cfg.conv_kernel, cfg.conv_stride):
        n = (n - k) // s + 1
        flops += 2.0 * n * ch * ch_in * k
        ch_in = ch
    t, d, ff = n, cfg.hidden_size, cfg.intermediate_size
    flops += 2.0 * t * ch_in * d  # feature projection
    kpos = cfg.num_conv_pos_embeddings
    flops += 2.0 * t * d * (d // cfg.num_conv_pos_embedding_groups) * kpos
    per_layer = 2.0 * t * (4 * d * d + 2 * d * ff) + 2.0 * 2 * t * t * d
    return flops + cfg.num_hidden_layers * per_layer


def _matmul_rate(device: str, dtype: Any) -> float:
    """Measured dense matmul FLOP/s on this device and dtype."""
    import torch

    n = 8192 if device == "cuda" else 1024
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    if device == "cuda":
        torch.cuda.synchronize()
    reps = 10 if device == "cuda" else 5
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    if device == "cuda":
        torch.cuda.synchronize()
    return 2.0 * n ** 3 * reps / (time.perf_counter() - t0)


def _write_corpus(root: Path, clips: int, lo: float, hi: float) -> float:
    import pandas as pd
    import soundfile as sf

    rng = np.random.default_rng(0)
    (root / "wav").mkdir(parents=True)
    rows, total = [], 0.0
    for i in range(clips):
        dur = float(rng.uniform(lo, hi))
        t = np.arange(int(dur * 16000)) / 16000
        x = 0.2 * np.sin(2 * np.pi * rng.uniform(120, 400) * t) + 0.05 * rng.standard_normal(len(t))
        sf.write(root / "wav" / f"c{i:04d}.wav", x.astype(np.float32), 16000, subtype="PCM_16")
        rows.append({"file": f"wav/c{i:04d}.wav", "split": "train"})
        total += len(t) / 16000
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)
    return total


def _seconds(path: str) -> float:
    from data.audio import audio_info

    frames, rate, _ = audio_info(path)
    return frames / rate


def _naive_pass(model: Any, fe: Any, paths: list[str], layer: int, device: str) -> list[np.ndarray]:
    """One clip at a time, the way common scripts do it; keep one layer's mean."""
    import torch

    from data.audio import load_audio

    out = []
    with torch.inference_mode():
        for p in paths:
            x = load_audio(p)
            inputs = fe(x, sampling_rate=16000, return_tensors="pt").input_values.to(device)
            hs = model(inputs, output_hidden_states=True).hidden_states
            out.append(hs[layer][0].mean(0).float().cpu().numpy())
    return out


def _agreement(model: Any, fe: Any, paths: list[str], ids: list[str], store: Any, key: str,
               layers: int, device: str, *, bf16: bool) -> float:
    """Min cosine of the stored (mean, last) of every layer against the per-clip forward."""
    import torch

    from data.audio import load_audio

    worst = 1.0
    stored = {p: store.read(key, f"pooled_{p}", ids)[0] for p in ("mean", "last")}  # (N, L, H)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else torch.autocast("cpu", enabled=False)
    with torch.inference_mode(), autocast:
        for n, path in enumerate(paths):
            inputs = fe(load_audio(path), sampling_rate=16000, return_tensors="pt").input_values.to(device)
            states = model(inputs, output_hidden_states=True).hidden_states[:layers]
            ref = {"mean": torch.stack([h[0].float().mean(0) for h in states]),
                   "last": torch.stack([h[0, -1].float() for h in states])}  # (L, H)
            for p, value in ref.items():
                a = torch.from_numpy(stored[p][n].astype(np.float64))
                cos = torch.nn.functional.cosine_similarity(a, value.double().cpu(), dim=-1)
                worst = min(worst, float(cos.min()))
    return worst


def _family_rates(root: Path, signals: list[np.ndarray], device: str, batch_seconds: float) -> dict[str, Any]:
    """Audio s/s of random base-size encoders of each family on the same clips (section e)."""
    import torch

    from extract.base import SAMPLE_RATE, ExtractOptions
    from extract.ssl import SSLExtractor
    from extract.untrained import make_untrained_w2vbert, make_untrained_wav2vec2, make_untrained_whisper

    audio_s = sum(len(s) for s in signals) / SAMPLE_RATE
    runs = {
        "wav2vec2-base": (make_untrained_wav2vec2, {}),
        "whisper-base-encoder": (make_untrained_whisper, {}),
        "whisper-base-encoder-trimmed": (make_untrained_whisper, {"whisper_input": "trimmed"}),
        "w2v-bert-base": (make_untrained_w2vbert, {}),
    }
    rates: dict[str, float] = {}
    strategies: dict[str, str] = {}
    for name, (maker, extra) in runs.items():
        folder = maker(root / maker.__name__, size="base")
        ext = SSLExtractor(str(folder), ExtractOptions(layers=None, poolings=("mean", "last"), device=device,
                                                       batch_seconds=batch_seconds, **extra))
        ext.load()
        ext.compute_batch(signals[:1])  # warm-up
        batches = [[signals[i] for i in b] for b in ext.plan_batches([len(s) for s in signals])]
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for out in ext.compute_stream(batches):
            assert all(isinstance(o, dict) for o in out), [o for o in out if not isinstance(o, dict)]
        if device == "cuda":
            torch.cuda.synchronize()
        rates[name] = round(audio_s / (time.perf_counter() - t0), 2)
        strategies[name] = ext.strategy_
    base = rates["wav2vec2-base"]
    return {"families_audio_s_per_s": rates,
            "families_ratio_vs_wav2vec2": {k: round(v / base, 3) for k, v in rates.items()},
            "families_strategy": strategies, "families_clips": len(signals),
            "families_audio_seconds": round(audio_s, 2)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from transformers import AutoConfig, AutoModel, Wav2Vec2FeatureExtractor

    from data.corpora import read_corpus
    from extract.base import ExtractOptions
    from extract.run import extract_corpus, prepare_extractor
    from extract.store import FeatureStore
    from extract.untrained import make_untrained_wav2vec2

    device = "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_path = args.model or str(make_untrained_wav2vec2(tmp / "model", size=args.size))
        audio_s = _write_corpus(tmp / "corpus", args.clips, args.min_seconds, args.max_seconds)
        corpus = read_corpus(tmp / "corpus", "csv")
        paths = [str(p) for p in corpus.clips["path"]]
        cfg = AutoConfig.from_pretrained(model_path)
        n_states = cfg.num_hidden_layers + 1

        # (a) ours: disk -> every layer x (mean, last) -> store
        opts = ExtractOptions(layers=None, poolings=("mean", "last"), dtype="float16",
                              device=device, batch_seconds=args.batch_seconds, workers=args.workers)
        prepared = prepare_extractor(f"ssl:{model_path}", opts)
        prepared[0].load()  # model load is not part of the throughput (both sides load once)
        if device == "cuda":
            torch.cuda.synchronize()
        store = FeatureStore(tmp / "wd")
        t0 = time.perf_counter()
        summary = extract_corpus(store, corpus, f"ssl:{model_path}", options=opts, prepared=prepared)
        if device == "cuda":
            torch.cuda.synchronize()
        ours_s = time.perf_counter() - t0
        assert summary.computed == args.clips and not summary.failed, summary.failed
        prov = store.header(summary.key).provenance

        # (b) naive: one clip at a time, one layer kept
        model = AutoModel.from_pretrained(model_path).to(device).eval()
        fe = Wav2Vec2FeatureExtractor(do_normalize=bool(prov.get("normalize", True)))
        _naive_pass(model, fe, paths[:2], n_states - 1, device)  # warm-up (both sides warmed)
        naive_paths = paths[:args.naive_clips] if args.naive_clips else paths
        # the naive side's time scaled to the whole corpus by audio seconds (1.0: all clips)
        scale = audio_s / sum(_seconds(p) for p in naive_paths) if args.naive_clips else 1.0
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        _naive_pass(model, fe, naive_paths, n_states - 1, device)
        if device == "cuda":
            torch.cuda.synchronize()
        naive_s = (time.perf_counter() - t0) * scale

        # (c) probing study: naive = one full pass per layer
        passes = args.naive_passes or n_states
        t0 = time.perf_counter()
        for layer in range(min(passes, n_states)):
            _naive_pass(model, fe, naive_paths, layer, device)
        if device == "cuda":
            torch.cuda.synchronize()
        measured = (time.perf_counter() - t0) * scale
        naive_study_s = measured * n_states / min(passes, n_states)

        # (d) stored values against the per-clip forward
        check = min(args.check_clips, len(paths))
        ids = list(corpus.clips.index[:check])
        agreement = {}
        if check:
            agreement["cosine_min_vs_per_clip_fp32"] = round(_agreement(
                model, fe, paths[:check], ids, store, summary.key, n_states, device, bf16=False), 6)
            if device == "cuda":
                agreement["cosine_min_vs_per_clip_bf16"] = round(_agreement(
                    model, fe, paths[:check], ids, store, summary.key, n_states, device, bf16=True), 6)

        flops = _flops_per_audio_second(cfg)
        result: dict[str, Any] = {
            "bench": "ssl", "model": f"random wav2vec2 {args.size}-size" if not args.model else args.model,
            "clips": args.clips, "audio_seconds": round(audio_s, 2),
            "layers_stored": n_states, "poolings": ["mean", "last"],
            "pipeline_seconds": round(ours_s, 3),
            "pipeline_audio_s_per_s": round(audio_s / ours_s, 2),
            "naive_seconds": round(naive_s, 3),
            "naive_audio_s_per_s": round(audio_s / naive_s, 2),
            "ratio_vs_naive": round(naive_s / ours_s, 3),
            "probe_naive_seconds": round(naive_study_s, 3),
            "probe_naive_passes_measured": min(passes, n_states),
            "probe_ours_seconds": round(ours_s, 3),
            "probe_speedup": round(naive_study_s / ours_s, 2),
            "padding_ratio": prov.get("padding_ratio"),
            "strategy": prov.get("strategy"),
            "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
            "dtype": f"store {opts.dtype}, compute {prov.get('compute_dtype')}",
            "gflop_per_audio_s": round(flops / 1e9, 2),
            "threads": torch.get_num_threads(),
            "checked_clips": check,
            **agreement,
        }
        if args.family_clips > 0:
            import soundfile as sf

            signals = [sf.read(p, dtype="float32")[0] for p in paths[:args.family_clips]]
            result.update(_family_rates(tmp / "families", signals, device, args.batch_seconds))
        if args.naive_clips:
            result["naive_clips_measured"] = len(naive_paths)
            result["naive_note"] = "naive times measured on the first clips, scaled by audio seconds"
        if device == "cuda":
            peak = _matmul_rate("cuda", torch.bfloat16)
            result["measured_bf16_matmul_tflops"] = round(peak / 1e12, 1)
            result["fraction_of_bf16_peak"] = round(flops * audio_s / ours_s / peak, 4)
            result["x_real_time"] = result["pipeline_audio_s_per_s"]
        else:
            rate = _matmul_rate("cpu", torch.float32)
            result["cpu_matmul_gflops"] = round(rate / 1e9, 1)
            result["compute_bound_audio_s_per_s"] = round(rate / flops, 2)
            result["fraction_of_compute_bound"] = round(audio_s / ours_s / (rate / flops), 3)
        return result
