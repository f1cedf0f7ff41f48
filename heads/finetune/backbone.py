"""One concept, at length: the network fine-tuning trains. The SSL backbone with its frame
outputs and their true lengths, the pooled hidden state, and the task heads trained on it.

One :class:`Backbone` class per encoder family (:data:`BACKBONES`, keyed like
:mod:`extract.ssl.families`): each prepares its input the way its frozen extraction does (the
waveform; Whisper's log-mel of 30 s windows, or cut to the clip with ``whisper_input``
``trimmed``; w2v-BERT's SeamlessM4T fbank with its attention mask), returns each clip's true
frame count, and names the parameters fine-tuning trains. The front ends that compute features
(log-mel, fbank) have no parameters: gradients start at the encoder's first layer.
"""
from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from extract.ssl import SSLExtractor
from heads.finetune.batches import eval_plan
from heads.finetune.config import MAX_EVAL_CLIPS, chain_entries, option_defaults, parse_head_rnn
from heads.nets import build_net, length_mask, masked_mean
from heads.nets.base import finish_outputs
from heads.training.outputs import Output, resolve_chain


class LinearOutputs(nn.Module):
    """One ``Linear(H, k)`` per output, regression outputs through the output mode (paper 004:
    "We feed this vector to fully-connected layer, mapping z to logits")."""

    def __init__(self, input_dim: int, specs: Sequence[tuple[str, str, int]], *, output: str) -> None:
        super().__init__()
        self.specs, self.output = [tuple(s) for s in specs], output
        self.linears = nn.ModuleList(nn.Linear(input_dim, k) for _, _, k in self.specs)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:  # x (B, H)
        return finish_outputs(self.specs, [lin(x) for lin in self.linears], self.output)


class FinetuneHeads(nn.Module):
    """The heads on pooled embeddings: one ``mlp-mtl`` net per output (seed 000's
    ``Linear(H,256)-GELU-Linear(256,k)`` per task), one shared net for all outputs, or with
    ``hidden=0`` one linear layer per output; or with ``rnn`` a sequence head on the frames.

    The sequence head (``sequence`` True; paper 002: "fed into an RNN ... Afterward, a fully
    connected layer changes the embeddings' dimension to the output sizes ... Finally, a
    pooling layer") is :class:`heads.nets.sequence.LstmHead`: the LSTM runs on each clip's
    packed true frames, one ``Linear(hidden, sum k)`` per frame, then ``pooling`` over the true
    frames (``last``: the clip's own last true frame); padding never reaches an output.

    Args:
        input_dim: embedding width H.
        specs: ``(name, kind, k)`` per output.
        hidden: width of the hidden layer; 0: none (:class:`LinearOutputs`).
        output: regression output mode.
        shared: one shared hidden layer instead of one per output.
        rnn: ``(layers, hidden size)`` of the sequence head's LSTM; None: heads on pooled
            embeddings.
        pooling: the sequence head's pooling over true frames (``first``, ``last``, ``max``,
            ``mean``).
        net: a registered vector net (:data:`heads.finetune.config.HEAD_NETS`) as the one head
            over all outputs, ``hidden`` its width; None: the heads above.
        net_options: that net's config fields (``chain`` as output names).
    """

    def __init__(self, input_dim: int, specs: Sequence[tuple[str, str, int]], *, hidden: int,
                 output: str, shared: bool, rnn: tuple[int, int] | None = None,
                 pooling: str = "mean", net: str | None = None,
                 net_options: dict[str, Any] | None = None) -> None:
        super().__init__()
        groups = [list(specs)] if shared else [[s] for s in specs]
        self.sequence = rnn is not None
        if net is not None:
            self.nets = nn.ModuleList([build_net(net, input_dim, list(specs), hidden=hidden,
                                                 output=output, **(net_options or {}))])
        elif rnn is not None:
            layers, size = rnn
            self.nets = nn.ModuleList([build_net("lstm", input_dim, list(specs), hidden=size,
                                                 layers=layers, pooling=pooling, output=output)])
        elif hidden == 0:
            self.nets = nn.ModuleList([LinearOutputs(input_dim, specs, output=output)])
        else:
            self.nets = nn.ModuleList(build_net("mlp-mtl", input_dim, g, hidden=hidden, output=output)
                                      for g in groups)
        self.tasks = tuple(tuple(s) for s in specs)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Pooled heads: x (B, H). Sequence head: x (B, T, H) frames with their true frame
        counts ``lengths`` (B,)."""
        if self.sequence:
            if lengths is None:
                raise ValueError("the sequence head reads frames: call it with (frames, lengths)")
            return self.nets[0](x, lengths)
        out: dict[str, torch.Tensor] = {}
        for net in self.nets:
            out.update(net(x))
        return out


HEAD_SETTINGS = ("head_hidden", "output", "shared_head", "head_rnn", "frame_pooling", "head_net",
                 "head_options")
"""The fields of :class:`~heads.finetune.config.FinetuneConfig` that shape
:class:`FinetuneHeads` (saved in heads.pt)."""


def build_heads(input_dim: int, specs: Sequence[tuple[str, str, int]], settings: dict[str, Any]
                ) -> FinetuneHeads:
    """The :class:`FinetuneHeads` of ``settings`` (keys of :data:`HEAD_SETTINGS`; a missing
    one, as in a checkpoint written before it existed, takes its default)."""
    defaults = option_defaults()
    s = {k: settings.get(k, defaults[k]) for k in HEAD_SETTINGS}
    rnn = None
    if s["head_rnn"] is not None:
        _, layers, size = parse_head_rnn(s["head_rnn"])
        rnn = (layers, size)
    options = dict(s["head_options"] or {})
    if "chain" in options:
        options["chain"] = chain_entries(options["chain"])
    return FinetuneHeads(input_dim, specs, hidden=s["head_hidden"], output=s["output"],
                         shared=s["shared_head"], rnn=rnn, pooling=s["frame_pooling"],
                         net=s["head_net"], net_options=options)


def head_settings(cfg: Any, outputs: Sequence[Output]) -> dict[str, Any]:
    """The :data:`HEAD_SETTINGS` of a run's config ``cfg`` with ``head_options``' ``chain``
    resolved to the run's output names (entries may name a task, a target or an output, as the
    frozen stage's ``chain``); what :func:`build_heads` takes and heads.pt records.

    Raises:
        ValueError: a chain entry names no output or several.
    """
    s = {k: getattr(cfg, k) for k in HEAD_SETTINGS}
    if s["head_options"] and "chain" in s["head_options"]:
        chain = resolve_chain(chain_entries(s["head_options"]["chain"]), outputs)
        s["head_options"] = {**s["head_options"], "chain": list(chain)}
    return s


def spec_augment_frames(config: Any) -> int:
    """Frames SpecAugment needs in a padded batch in train mode (``mask_time_length``; 1
    without time masking)."""
    if getattr(config, "mask_time_prob", 0) > 0:
        return max(1, int(getattr(config, "mask_time_length", 1)))
    return 1


class Backbone:
    """A wav2vec2-style model (``conv-waveform``) with what a forward pass needs:
    normalisation, mask, pooling, autocast."""

    family = "conv-waveform"

    def __init__(self, model: nn.Module, *, do_normalize: bool, use_mask: bool, min_samples: int,
                 layer: int | None, device: torch.device) -> None:
        self.model, self.do_normalize, self.use_mask = model, do_normalize, use_mask
        self.min_samples, self.layer, self.device = min_samples, layer, device
        cfg = model.config
        # SpecAugment in train mode needs at least mask_time_length frames in the padded batch
        stride = int(np.prod(cfg.conv_stride))
        self.min_batch_samples = min_samples + (spec_augment_frames(cfg) - 1) * stride
        self._grabbed: torch.Tensor | None = None
        if layer is not None:
            self._hook_layer(layer)

    @property
    def hidden_size(self) -> int:
        """Width of the hidden state the heads read."""
        return int(self.model.config.hidden_size)

    def trainable_params(self, freeze_feature_encoder: bool) -> list[nn.Parameter]:
        """Stage 2's backbone parameters, ``requires_grad`` set: all of them, but the CNN
        feature encoder with ``freeze_feature_encoder``."""
        return trainable_params(self.model, freeze_feature_encoder)

    def _hook_layer(self, layer: int) -> None:
        """Catch hidden state ``layer`` with forward hooks instead of ``output_hidden_states``.

        In train mode LayerDrop skips layers and transformers then reports fewer hidden states,
        so an index into them would name a different layer. Hooks on the encoder's input
        dropout (hidden state 0: the input of the first layer) and on layers 1..``layer`` keep
        the latest output: a skipped layer passes its input on, as LayerDrop means.
        """
        encoder = self.model.encoder
        if not isinstance(getattr(encoder, "dropout", None), nn.Module):
            raise ValueError(f"option layer is not supported for {type(encoder).__name__}; leave "
                             f"it out to use the last hidden state")

        def grab(module: nn.Module, args: Any, out: Any) -> None:
            self._grabbed = out[0] if isinstance(out, tuple) else out

        encoder.dropout.register_forward_hook(grab)
        for block in list(encoder.layers)[:layer]:
            block.register_forward_hook(grab)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.device.type == "cuda":
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def frames(self, waves: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """The hidden state the heads read, for every frame, with each clip's true frame count:
        ``((B, T, H) float32, (B,) int64)`` on the device (grad as the mode allows).

        Args:
            waves: normalised ``(samples,)`` clips, each at least one receptive field long.
        """
        lengths = torch.tensor([len(w) for w in waves])
        total = max(int(lengths.max()), self.min_batch_samples)
        x = torch.zeros(len(waves), total)
        for b, w in enumerate(waves):
            x[b, :len(w)] = torch.from_numpy(w)
        kwargs: dict[str, Any] = {}
        if self.use_mask:
            kwargs["attention_mask"] = (torch.arange(total)[None, :] < lengths[:, None]).long().to(self.device)
        x = x.to(self.device, non_blocking=True)
        self._grabbed = None
        with self.autocast():
            out = self.model(x, **kwargs)
        h = out.last_hidden_state if self.layer is None else self._grabbed  # (B, T, H)
        assert h is not None, "the hidden-state hook did not fire"
        frames = self.model._get_feat_extract_output_lengths(lengths).clamp(1, h.shape[1])
        return h.float(), frames.to(h.device)

    def pooled(self, waves: Sequence[np.ndarray]) -> torch.Tensor:
        """Masked mean over each clip's true frames: ``(B, H)`` float32 (grad as the mode allows).

        Args:
            waves: normalised ``(samples,)`` clips, each at least one receptive field long.
        """
        h, frames = self.frames(waves)
        return masked_mean(h, length_mask(frames, h.shape[1]))

    @torch.no_grad()
    def encode(self, waves: Sequence[np.ndarray], *, max_samples: float,
               done: Callable[[list[int]], None] | None = None,
               per_batch: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], list[Any]] | None = None
               ) -> tuple[torch.Tensor, list[Any]]:
        """Eval-mode embeddings of whole clips ``(n, H)`` on the device, in input order, and
        what ``per_batch(frames (B, T, H), lengths (B,), pooled (B, H))`` returns per clip
        (one list entry per clip of the batch; ``[]`` without ``per_batch``). ``done``
        receives the input indices of each finished batch."""
        was = self.model.training
        self.model.eval()
        try:
            lengths = [len(w) for w in waves]
            out: list[torch.Tensor | None] = [None] * len(waves)
            extra: list[Any] = [None] * len(waves) if per_batch is not None else []
            for batch in eval_plan(lengths, max_samples=max_samples, max_clips=MAX_EVAL_CLIPS):
                h, frames = self.frames([waves[i] for i in batch])
                pooled = masked_mean(h, length_mask(frames, h.shape[1]))
                for i, row in zip(batch, pooled):
                    out[i] = row
                if per_batch is not None:
                    for i, value in zip(batch, per_batch(h, frames, pooled)):
                        extra[i] = value
                if done:
                    done(batch)
            return torch.stack(out), extra  # type: ignore[arg-type]
        finally:
            self.model.train(was)

    def embed(self, waves: Sequence[np.ndarray], *, max_samples: float,
              done: Callable[[list[int]], None] | None = None) -> torch.Tensor:
        """Eval-mode embeddings of whole clips ``(n, H)`` on the device, in input order;
        ``done`` receives the input indices of each finished batch."""
        return self.encode(waves, max_samples=max_samples, done=done)[0]


def trainable_params(model: nn.Module, freeze_feature_encoder: bool) -> list[nn.Parameter]:
    """A wav2vec2-style model's parameters to train, ``requires_grad`` set: all of them, but
    the CNN feature encoder with ``freeze_feature_encoder``."""
    for p in model.parameters():
        p.requires_grad_(True)
    if freeze_feature_encoder:
        if hasattr(model, "freeze_feature_encoder"):
            model.freeze_feature_encoder()  # also skips the encoder's own checkpointing
        else:
            for p in model.feature_extractor.parameters():
                p.requires_grad_(False)
    return [p for p in model.parameters() if p.requires_grad]


def train_only(model: nn.Module, names: Sequence[str], frozen: Sequence[str]) -> list[nn.Parameter]:
    """Set ``requires_grad`` on the parameters under the module paths ``names`` but not under
    ``frozen``, clear it on every other parameter of ``model``; return the trained ones."""
    def under(name: str, prefixes: Sequence[str]) -> bool:
        return any(name == p or name.startswith(p + ".") for p in prefixes)

    out = []
    for name, p in model.named_parameters():
        train = under(name, names) and not under(name, frozen)
        p.requires_grad_(train)
        if train:
            out.append(p)
    return out


class StateGrabber:
    """Catch hidden state ``layer`` of a pre-norm encoder without an input-dropout module
    (Whisper's) through forward *pre*-hooks: the input of the first layer at or after
    ``layer`` that runs (LayerDrop skips layers; a skipped layer passes its input on), else the
    input of the final module ``after`` (the encoder's final layer norm)."""

    def __init__(self, layers: Sequence[nn.Module], layer: int, after: nn.Module) -> None:
        self.value: torch.Tensor | None = None
        for module in [*list(layers)[layer:], after]:
            module.register_forward_pre_hook(self._grab)

    def reset(self) -> None:
        """Forget a value (one a recomputing backward pass left) before a forward pass."""
        self.value = None

    def _grab(self, module: nn.Module, args: Any) -> None:
        if self.value is None:
            self.value = args[0]

    def take(self) -> torch.Tensor:
        value, self.value = self.value, None
        assert value is not None, "the hidden-state hook did not fire"
        return value


class WhisperBackbone(Backbone):
    """Whisper's encoder (``whisper-log-mel``), input prepared as its extraction does.

    Each clip is cut into 30 s windows, every window zero-padded to 30 s and turned into
    ``WhisperFeatureExtractor``'s log-mel on the device (:meth:`extract.ssl.whisper.WhisperEncoder.log_mel`,
    no parameters), then the encoder's forward (``whisper_input`` ``padded``: the model's own
    input) or the encoder's modules on each window's log-mel cut to its true frames under an
    attention mask (``trimmed``: :meth:`~extract.ssl.whisper.WhisperEncoder.encode_trimmed`).
    Only each window's true frames are kept (``(mel - 1) // 2 + 1``, mel = ``ceil(n / 160)``),
    a clip's windows concatenated: frames past a clip's end never reach a pooled vector or the
    CTC head. SpecAugment (``apply_spec_augment``) masks the log-mel in train mode as
    ``WhisperModel`` does, within each window's true mel frames.

    Args:
        model: a ``WhisperModel`` (its decoder is never run or trained).
        encoder: the extraction's :class:`~extract.ssl.whisper.WhisperEncoder` of ``model``,
            configured with the run's ``whisper_input``.
        layer: hidden state the heads read (``None``: the last, after the final layer norm).
    """

    family = "whisper-log-mel"

    def __init__(self, model: nn.Module, *, encoder: Any, layer: int | None, device: torch.device) -> None:
        self.model, self.enc, self.layer, self.device = model, encoder, layer, device
        self.do_normalize, self.min_samples, self.min_batch_samples = False, 1, 1
        self.use_mask = bool(encoder.trimmed)
        self._grabbed = None
        n_layers = len(encoder.encoder.layers)
        self.grabber = None
        if layer is not None and layer < n_layers:  # the last state is the encoder's output
            self.grabber = StateGrabber(encoder.encoder.layers, layer, encoder.encoder.layer_norm)

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.d_model)

    def trainable_params(self, freeze_feature_encoder: bool) -> list[nn.Parameter]:
        """The encoder's parameters but its fixed sinusoidal positions; without the conv stem
        (``conv1``, ``conv2``, Whisper's feature encoder) when ``freeze_feature_encoder``. The
        decoder stays as loaded."""
        frozen = ["encoder.embed_positions"] + (["encoder.conv1", "encoder.conv2"] if freeze_feature_encoder else [])
        return train_only(self.model, ["encoder"], frozen)

    def frames(self, waves: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        from extract.ssl.whisper import MAX_WINDOWS_PER_FORWARD

        enc = self.enc
        windows = [enc.window_lengths(len(w)) for w in waves]
        x = torch.zeros(sum(len(c) for c in windows), enc.window)
        r = 0
        for wave, clip_windows in zip(waves, windows):
            for j, m in enumerate(clip_windows):
                x[r, :m] = torch.from_numpy(wave[j * enc.window:j * enc.window + m])
                r += 1
        mel = [math.ceil(m / enc.hop) for c in windows for m in c]
        with torch.no_grad():
            features = enc.log_mel(x.to(self.device, non_blocking=True))  # (W, mels, 3000)
        if self.model.training and getattr(self.model.config, "apply_spec_augment", False):
            n = torch.tensor(mel, device=features.device)
            true_mel = (torch.arange(features.shape[-1], device=features.device)[None, :] < n[:, None]).long()
            features = self.model._mask_input_features(features, attention_mask=true_mel)
        pieces = []
        with self.autocast():
            for s in range(0, features.shape[0], MAX_WINDOWS_PER_FORWARD):
                part = features[s:s + MAX_WINDOWS_PER_FORWARD]
                if self.grabber is not None:
                    self.grabber.reset()
                if enc.trimmed:
                    last = enc.encode_trimmed(part, mel[s:s + MAX_WINDOWS_PER_FORWARD])[-1]
                else:
                    last = enc.encoder(part).last_hidden_state
                pieces.append(last if self.grabber is None else self.grabber.take())
        width = max(p.shape[1] for p in pieces)
        h = torch.cat([nn.functional.pad(p, (0, 0, 0, width - p.shape[1])) for p in pieces])
        (h,), lengths = enc.assemble((h,), windows)  # (B, T, H): each clip's true frames
        return h.float(), torch.tensor(lengths, device=h.device)


class W2VBertBackbone(Backbone):
    """w2v-BERT 2.0 (``w2v-bert-fbank``), input prepared as its extraction does:
    ``SeamlessM4TFeatureExtractor``'s per-clip normalised, pair-stacked fbank of the padded
    batch with its attention mask (the mask's frames are each clip's true frames; the conformer's
    causal depthwise convolutions and the attention do not reach them from the padding), the
    model's own forward (SpecAugment and LayerDrop in train mode as its config says).

    Hidden states are caught with hooks as for the conv family; without ``layer`` the last
    encoder layer's output is read (an adapter or intermediate FFN after the encoder, which
    the stored hidden states do not include, is neither read nor trained).

    Args:
        model: a ``Wav2Vec2BertModel``.
        encoder: the extraction's :class:`~extract.ssl.w2vbert.W2VBertEncoder` of ``model``.
        layer: hidden state the heads read (``None``: the last).
    """

    family = "w2v-bert-fbank"

    def __init__(self, model: nn.Module, *, encoder: Any, layer: int | None, device: torch.device) -> None:
        self.model, self.enc, self.device = model, encoder, device
        self.layer = len(model.encoder.layers) if layer is None else layer
        self.do_normalize, self.use_mask = False, True
        self.min_samples = self.min_batch_samples = type(encoder).min_samples(model.config)
        self.min_frames = spec_augment_frames(model.config)
        self._grabbed = None
        self._hook_layer(self.layer)

    def trainable_params(self, freeze_feature_encoder: bool) -> list[nn.Parameter]:
        """The feature projection (frozen with ``freeze_feature_encoder``: w2v-BERT's feature
        encoder, the one layer between the fbank and the conformer), the SpecAugment embedding
        and the conformer layers."""
        names = ["feature_projection", "masked_spec_embed", "encoder"]
        return train_only(self.model, names, ["feature_projection"] if freeze_feature_encoder else [])

    def frames(self, waves: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        from extract.base import SAMPLE_RATE

        feats = self.enc.fe(list(waves), sampling_rate=SAMPLE_RATE, return_tensors="pt",
                            return_attention_mask=True, padding=True)
        x, mask = feats.input_features, feats.attention_mask  # (B, T, 160), (B, T)
        if x.shape[1] < self.min_frames:  # SpecAugment's span must fit: padding under the mask
            x = nn.functional.pad(x, (0, 0, 0, self.min_frames - x.shape[1]))
            mask = nn.functional.pad(mask, (0, self.min_frames - mask.shape[1]))
        x, mask = x.to(self.device, non_blocking=True), mask.to(self.device, non_blocking=True)
        self._grabbed = None
        with self.autocast():
            self.model(x, attention_mask=mask)
        h = self._grabbed
        assert h is not None, "the hidden-state hook did not fire"
        return h.float(), mask.sum(dim=1)


BACKBONES: dict[str, type[Backbone]] = {
    Backbone.family: Backbone,
    WhisperBackbone.family: WhisperBackbone,
    W2VBertBackbone.family: W2VBertBackbone,
}
"""The :class:`Backbone` of each encoder family (``Encoder.family``) that finetune trains."""


def build_backbone(model: nn.Module, ex: SSLExtractor, *, layer: int | None,
                   device: torch.device) -> Backbone:
    """The family's :class:`Backbone` of ``model`` (loaded by :func:`load_model`), prepared
    as ``ex`` (resolved, with the run's options) extracts it.

    Raises:
        ValueError: the family has no fine-tuning backbone.
    """
    family = ex.family_.family
    if family not in BACKBONES:
        raise ValueError(f"finetune has no backbone for {family} models ({ex.arg!r}); its frozen "
                         f"layers work with extract, train, probe and analyze")
    if family == Backbone.family:
        return Backbone(model, do_normalize=ex.do_normalize_, use_mask=uses_attention_mask(ex),
                        min_samples=ex.min_samples_, layer=layer, device=device)
    encoder = ex.family_(model, 0)
    encoder.configure(ex.options)
    return BACKBONES[family](model, encoder=encoder, layer=layer, device=device)


def uses_attention_mask(ex: SSLExtractor) -> bool:
    """The checkpoint's feature extractor says whether the model takes an attention mask;
    without that file, layer-norm conv encoders do (group-norm ones were trained without)."""
    directory = ex.source_.directory
    if directory is not None and (directory / "preprocessor_config.json").is_file():
        pre = json.loads((directory / "preprocessor_config.json").read_text())
        if "return_attention_mask" in pre:
            return bool(pre["return_attention_mask"])
    return getattr(ex.config_, "feat_extract_norm", "layer") == "layer"


def load_model(ex: SSLExtractor) -> nn.Module:
    """The base checkpoint as a bare float32 model, found the way extraction finds it."""
    from transformers import AutoModel

    from extract.base import ExtractorUnavailable

    src = ex.source_
    where = str(src.directory) if src.directory is not None else ex.arg
    try:
        return AutoModel.from_pretrained(
            where, attn_implementation=ex.attn_implementation_, dtype=torch.float32,
            local_files_only=src.kind != "online",
            revision=src.commit if src.kind == "online" else None)
    except Exception as exc:  # noqa: BLE001
        raise ExtractorUnavailable(f"cannot load the weights of {ex.arg!r}: {exc}") from exc

