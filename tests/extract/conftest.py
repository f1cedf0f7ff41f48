"""Tiny randomly initialised speech SSL checkpoints, one per family, saved with save_pretrained.

The conv stack is the real one (kernels 10,3,3,3,3,2,2, strides 5,2,2,2,2,2,2: a 400-sample
receptive field and a 320-sample hop) with 16 channels; the transformer has 3 layers of width 32.
Each folder also gets a ``preprocessor_config.json`` shaped like the real checkpoints'.
"""
from __future__ import annotations

from pathlib import Path

import pytest

CONV = {
    "conv_dim": (16,) * 7,
    "conv_kernel": (10, 3, 3, 3, 3, 2, 2),
    "conv_stride": (5, 2, 2, 2, 2, 2, 2),
}
COMMON = {
    **CONV,
    "hidden_size": 32,
    "num_hidden_layers": 3,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "num_conv_pos_embedding_groups": 4,
    "layerdrop": 0.5,  # must not matter: the extractor runs in eval mode
}

# family -> (config class name, config kwargs, do_normalize, return_attention_mask)
FAMILIES: dict[str, tuple[str, dict, bool, bool]] = {
    # facebook/wav2vec2-base: group norm, post-norm encoder; preprocessor do_normalize=True
    "wav2vec2-group": ("Wav2Vec2Config", {
        **COMMON, "feat_extract_norm": "group", "do_stable_layer_norm": False,
        "num_conv_pos_embeddings": 8,
    }, True, False),
    # facebook/wav2vec2-large-lv60: layer norm convs, pre-norm ("stable") encoder
    "wav2vec2-layer": ("Wav2Vec2Config", {
        **COMMON, "feat_extract_norm": "layer", "do_stable_layer_norm": True,
        "num_conv_pos_embeddings": 8,
    }, True, True),
    # facebook/hubert-base-ls960: group norm, no layer norm before the projection
    "hubert": ("HubertConfig", {
        **COMMON, "feat_extract_norm": "group", "do_stable_layer_norm": False,
        "num_conv_pos_embeddings": 7, "feat_proj_layer_norm": False,
    }, False, False),
    # microsoft/wavlm-base-plus: group norm, gated relative position bias, eager attention
    "wavlm": ("WavLMConfig", {
        **COMMON, "feat_extract_norm": "group", "do_stable_layer_norm": False,
        "num_conv_pos_embeddings": 8, "num_buckets": 32, "max_bucket_distance": 80,
    }, False, True),
    # facebook/data2vec-audio-base: layer norm convs, 5 stacked positional conv layers
    "data2vec-audio": ("Data2VecAudioConfig", {
        **COMMON, "conv_pos_kernel_size": 5, "num_conv_pos_embeddings": 3,
    }, True, True),
}


def build_tiny_model(family: str, folder: Path, *, seed: int = 0, preprocessor: bool = True) -> Path:
    """Write a tiny random checkpoint of ``family`` into ``folder`` and return it."""
    import torch
    import transformers
    from transformers import AutoModel, Wav2Vec2FeatureExtractor

    config_name, kwargs, do_normalize, return_mask = FAMILIES[family]
    config = getattr(transformers, config_name)(**kwargs)
    torch.manual_seed(seed)
    model = AutoModel.from_config(config)
    model.save_pretrained(folder)
    if preprocessor:
        Wav2Vec2FeatureExtractor(
            feature_size=1, sampling_rate=16_000, padding_value=0.0,
            do_normalize=do_normalize, return_attention_mask=return_mask,
        ).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """family -> folder of a tiny random checkpoint (see :data:`FAMILIES`)."""
    root = tmp_path_factory.mktemp("tiny_ssl")
    return {family: build_tiny_model(family, root / family) for family in FAMILIES}
