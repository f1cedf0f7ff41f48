"""The HEAR 2021 common API over this project's SSL extraction, for hear-eval-kit and the
``hear-validator`` check::

    import extract.hear as hear
    model = hear.load_model("facebook/wav2vec2-base@12:mean")
    scene = hear.get_scene_embeddings(audio, model)              # (n_sounds, emb)
    frames, ms = hear.get_timestamp_embeddings(audio, model)     # (n_sounds, T, emb), (n_sounds, T)

``audio`` is a float32 tensor (n_sounds, n_samples) at 16 kHz, as HEAR passes it.

The model string is ``MODEL[@LAYERS[:POOLING]]``: MODEL a hub id or a ``save_pretrained``
folder (offline and not cached: the same message as ``extract``), LAYERS comma-separated
hidden-state indices or ``all``, POOLING one of the extractor's poolings. A bare MODEL means its
LAST hidden state with mean pooling (our documented default: the state ``last_hidden_state``
names for most families; for emotion, middle layers are often better, see ``probe``). With
several layers, both embeddings concatenate the layers in the order given.

Values are those ``extract`` stores (the same exact front end and batching self-check, float32):
pooling runs over each sound's own frames, and a timestamp row is one encoder frame (20 ms
apart), timestamped at the centre of the samples it covers, in milliseconds.
"""
from __future__ import annotations

import re
from typing import Any

import numpy as np
import torch
from torch import nn

from extract.base import SAMPLE_RATE, ExtractOptions
from extract.pooling import POOLINGS
from extract.ssl import SSLExtractor

_SELECTION = re.compile(r"^(?P<model>.+?)(?:@(?P<layers>all|\d+(?:,\d+)*)(?::(?P<pooling>\w+))?)?$")


def parse_model_string(text: str) -> tuple[str, tuple[int, ...] | None, str]:
    """(model, layers or None for the last one, pooling) of ``MODEL[@LAYERS[:POOLING]]``.

    ``all`` gives every hidden state (returned as the empty tuple, resolved on loading).

    Example:
        >>> parse_model_string("facebook/wav2vec2-base@3,12:max")
        ('facebook/wav2vec2-base', (3, 12), 'max')
        >>> parse_model_string("/models/tiny")
        ('/models/tiny', None, 'mean')
    """
    m = _SELECTION.match(text.strip())
    if not text.strip() or m is None:
        raise ValueError(f"HEAR model string {text!r}: expected MODEL[@LAYERS[:POOLING]], "
                         f"e.g. facebook/wav2vec2-base@12:mean")
    pooling = m.group("pooling") or "mean"
    if pooling not in POOLINGS:
        raise ValueError(f"HEAR model string {text!r}: pooling {pooling!r} is not one of "
                         f"{', '.join(POOLINGS)}")
    layers = m.group("layers")
    if layers is None:
        return m.group("model"), None, pooling
    if layers == "all":
        return m.group("model"), (), pooling
    return m.group("model"), tuple(int(x) for x in layers.split(",")), pooling


class HearModel(nn.Module):
    """A loaded SSL encoder with HEAR's attributes.

    Attributes:
        sample_rate: 16000.
        scene_embedding_size, timestamp_embedding_size: hidden size x number of layers.
        layers: the hidden-state indices used; pooling: the scene pooling.
    """

    sample_rate = SAMPLE_RATE

    def __init__(self, model: str, layers: tuple[int, ...] | None, pooling: str, *,
                 device: str = "cpu") -> None:
        super().__init__()
        self.model_name, self.pooling = model, pooling
        self._requested = layers
        self._build(device)

    def _build(self, device: str) -> None:
        probe = SSLExtractor(self.model_name, ExtractOptions(poolings=(self.pooling,)))
        probe.resolve()
        last = probe.family_.num_states(probe.config_) - 1
        layers = (last,) if self._requested is None else (self._requested or None)
        ex = SSLExtractor(self.model_name, ExtractOptions(
            layers=layers, poolings=(self.pooling,), frames_layers=layers or tuple(range(last + 1)),
            dtype="float32", device=device))
        ex.load()
        self.extractor = ex
        self.layers = tuple(ex.layers_)
        self.backbone = ex.model_  # a registered submodule: HEAR's checks see a torch model
        hidden = ex.family_.hidden_size(ex.config_)
        self.scene_embedding_size = int(hidden * len(self.layers))
        self.timestamp_embedding_size = int(hidden * len(self.layers))
        self.hop_samples, self.centre_samples = ex.family_.frame_timing(ex.config_)

    def to(self, *args: Any, **kwargs: Any) -> HearModel:  # noqa: D102 - rebuilds on a new device
        device = torch._C._nn._parse_to(*args, **kwargs)[0]
        if device is not None and torch.device(device).type != self.extractor.device_.type:
            self._build(torch.device(device).type)
        return self

    def embed(self, audio: torch.Tensor) -> list[dict[str, np.ndarray]]:
        """The extractor's output for each sound of a (n_sounds, n_samples) batch."""
        if not isinstance(audio, torch.Tensor) or audio.ndim != 2:
            raise ValueError(f"HEAR audio must be a (n_sounds, n_samples) tensor, got "
                             f"{type(audio).__name__} of shape {tuple(getattr(audio, 'shape', ()))}")
        signals = [row for row in audio.detach().float().cpu().numpy()]
        out = self.extractor.compute_batch(signals)
        for i, r in enumerate(out):
            if isinstance(r, Exception):
                raise ValueError(f"HEAR sound {i}: {r}") from r
        return out  # type: ignore[return-value]


def load_model(model_file_path: str = "") -> HearModel:
    """HEAR's ``load_model``: ``model_file_path`` is the model string (see the module docstring).

    Raises:
        ValueError: no model string (this API has no built-in weights) or a malformed one.
        ExtractorUnavailable: the weights are not here (says how to provide them).
    """
    if not model_file_path:
        raise ValueError("extract.hear has no built-in weights: pass a model string, e.g. "
                         "hear-validator extract.hear --model facebook/wav2vec2-base@12:mean "
                         "(a hub id in the local cache or a save_pretrained folder)")
    model, layers, pooling = parse_model_string(model_file_path)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return HearModel(model, layers, pooling, device=device)


def get_scene_embeddings(audio: torch.Tensor, model: HearModel) -> torch.Tensor:
    """(n_sounds, scene_embedding_size) float32: each layer's pooled vector, concatenated."""
    rows = [r[f"pooled_{model.pooling}"].reshape(-1) for r in model.embed(audio)]
    return torch.from_numpy(np.stack(rows).astype(np.float32)).to(audio.device)


def get_timestamp_embeddings(audio: torch.Tensor, model: HearModel
                             ) -> tuple[torch.Tensor, torch.Tensor]:
    """((n_sounds, n_frames, timestamp_embedding_size) float32, (n_sounds, n_frames) ms).

    The sounds of one HEAR batch have one length, hence one frame count.
    """
    results = model.embed(audio)
    frames = np.stack([np.concatenate([r[f"frames_l{layer}"] for layer in model.layers], axis=1)
                       for r in results]).astype(np.float32)
    t = np.arange(frames.shape[1], dtype=np.float64)
    ms = (t * model.hop_samples + model.centre_samples) * 1000.0 / SAMPLE_RATE
    stamps = np.broadcast_to(ms.astype(np.float32), frames.shape[:2]).copy()
    return torch.from_numpy(frames).to(audio.device), torch.from_numpy(stamps).to(audio.device)
