"""Randomly initialised wav2vec2, Whisper and w2v-BERT checkpoints, saved like real ones, for demos and benchmarks.

They exercise the real loading path (``from_pretrained`` on a local folder) where no weights can
be downloaded. Their embeddings carry no learned knowledge: every folder written here holds an
``UNTRAINED.txt`` marker, and reports label sets made from it as untrained.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

MARKER = "UNTRAINED.txt"

BASE = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
        "intermediate_size": 3072, "conv_dim": (512,) * 7}
"""wav2vec2-base sizes: same compute as the real checkpoint."""

LARGE = {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
         "intermediate_size": 4096, "conv_dim": (512,) * 7, "feat_extract_norm": "layer",
         "do_stable_layer_norm": True, "conv_bias": True}
"""wav2vec2-large-lv60 sizes (layer-norm conv encoder, pre-norm transformer): its compute."""

SMALL = {"hidden_size": 64, "num_hidden_layers": 4, "num_attention_heads": 4,
         "intermediate_size": 128, "conv_dim": (32,) * 7, "num_conv_pos_embeddings": 16,
         "num_conv_pos_embedding_groups": 4}
"""A small model for the demo: the same conv geometry (400-sample receptive field, 320 hop)."""


def is_untrained(folder: str | os.PathLike) -> bool:
    """True when a model folder was written by :func:`make_untrained_wav2vec2`."""
    return (Path(folder) / MARKER).exists()


def make_untrained_wav2vec2(folder: str | os.PathLike, *, size: str = "small", seed: int = 0) -> Path:
    """Write a random wav2vec2 (group-norm like wav2vec2-base; ``large``: like lv60) into ``folder``.

    A folder written before with the same marker is reused.

    Args:
        folder: target folder (config.json, weights, preprocessor_config.json, UNTRAINED.txt).
        size: ``small`` (demo), ``base`` (benchmark: wav2vec2-base compute) or ``large``
            (wav2vec2-large-lv60 compute: 24 layers of width 1024, layer-norm convs).
        seed: torch seed of the initialisation.
    """
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    sizes = {"small": SMALL, "base": BASE, "large": LARGE}

    def build() -> tuple[Any, Callable[[Path], Any]]:
        if size not in sizes:
            raise ValueError(f"size {size!r} is not valid; valid: {', '.join(sizes)}")
        dims = {"feat_extract_norm": "group", "do_stable_layer_norm": False, **sizes[size]}
        cfg = Wav2Vec2Config(**dims, conv_kernel=(10, 3, 3, 3, 3, 2, 2),
                             conv_stride=(5, 2, 2, 2, 2, 2, 2))
        preprocessor = json.dumps({
            "feature_extractor_type": "Wav2Vec2FeatureExtractor", "do_normalize": True,
            "feature_size": 1, "padding_side": "right", "padding_value": 0.0,
            "return_attention_mask": size == "large", "sampling_rate": 16000}, indent=2)
        return Wav2Vec2Model(cfg), lambda f: (f / "preprocessor_config.json").write_text(preprocessor)

    return _write_random(folder, f"wav2vec2 ({size}, seed {seed})", seed, build)

WHISPER_SIZES = {
    "tiny-test": {"d_model": 32, "encoder_layers": 2, "encoder_attention_heads": 2, "encoder_ffn_dim": 64,
                  "num_mel_bins": 80},
    "base": {"d_model": 512, "encoder_layers": 6, "encoder_attention_heads": 8, "encoder_ffn_dim": 2048,
             "num_mel_bins": 80},
}
"""Whisper encoder sizes: a tiny one for tests, whisper-base's encoder for the benchmark."""

W2VBERT_SIZES = {
    "tiny-test": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                  "intermediate_size": 64, "conv_depthwise_kernel_size": 5},
    "base": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
             "intermediate_size": 3072},
}
"""w2v-BERT sizes: a tiny one for tests, a base-width conformer for the benchmark."""


def _write_random(folder: str | os.PathLike, what: str, seed: int,
                  build: Callable[[], tuple[Any, Callable[[Path], Any]]]) -> Path:
    """Reuse ``folder`` when it holds a marked checkpoint; else seed torch, ``build()`` the model
    and the writer of its preprocessor files, save both and mark the folder as untrained."""
    import torch

    folder = Path(folder)
    if (folder / "config.json").exists() and is_untrained(folder):
        return folder
    torch.manual_seed(seed)
    model, save_preprocessor = build()
    folder.mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(folder)
    save_preprocessor(folder)
    (folder / MARKER).write_text(
        f"Randomly initialised {what} written by vocal-probe. Its embeddings exercise the "
        f"extraction path; they are not a result.\n")
    return folder


def make_untrained_whisper(folder: str | os.PathLike, *, size: str = "tiny-test", seed: int = 0) -> Path:
    """Write a random ``WhisperModel`` and its ``WhisperFeatureExtractor`` into ``folder``.

    The decoder is the smallest transformers allows (one layer, 64 tokens); only the encoder
    is used by ``ssl:``. A folder written before with the same marker is reused.

    Args:
        folder: target folder (config.json, weights, preprocessor_config.json, UNTRAINED.txt).
        size: ``tiny-test`` (tests) or ``base`` (whisper-base's encoder compute).
        seed: torch seed of the initialisation.
    """
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    def build() -> tuple[Any, Callable[[Path], Any]]:
        if size not in WHISPER_SIZES:
            raise ValueError(f"size {size!r} is not valid; valid: {', '.join(WHISPER_SIZES)}")
        dims = WHISPER_SIZES[size]
        cfg = WhisperConfig(**dims, decoder_layers=1,
                            decoder_attention_heads=dims["encoder_attention_heads"],
                            decoder_ffn_dim=64, vocab_size=64, max_target_positions=16,
                            pad_token_id=0, bos_token_id=1, eos_token_id=2,
                            decoder_start_token_id=1)
        return WhisperModel(cfg), WhisperFeatureExtractor(
            feature_size=dims["num_mel_bins"]).save_pretrained

    return _write_random(folder, f"Whisper encoder ({size}, seed {seed})", seed, build)


def make_untrained_w2vbert(folder: str | os.PathLike, *, size: str = "tiny-test", seed: int = 0) -> Path:
    """Write a random ``Wav2Vec2BertModel`` and its ``SeamlessM4TFeatureExtractor`` into ``folder``.

    Args:
        folder: target folder (config.json, weights, preprocessor_config.json, UNTRAINED.txt).
        size: ``tiny-test`` (tests) or ``base`` (12 conformer layers of width 768).
        seed: torch seed of the initialisation.
    """
    from transformers import SeamlessM4TFeatureExtractor, Wav2Vec2BertConfig, Wav2Vec2BertModel

    def build() -> tuple[Any, Callable[[Path], Any]]:
        if size not in W2VBERT_SIZES:
            raise ValueError(f"size {size!r} is not valid; valid: {', '.join(W2VBERT_SIZES)}")
        return (Wav2Vec2BertModel(Wav2Vec2BertConfig(**W2VBERT_SIZES[size])),
                SeamlessM4TFeatureExtractor().save_pretrained)

    return _write_random(folder, f"w2v-BERT 2.0 ({size}, seed {seed})", seed, build)
