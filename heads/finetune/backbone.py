"""The SSL backbone with its frame outputs and their true lengths, the pooled hidden state, and
the task heads trained on it."""
from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from extract.ssl import SSLExtractor
from heads.finetune.batches import eval_plan
from heads.finetune.config import MAX_EVAL_CLIPS
from heads.nets import build_net, length_mask, masked_mean
from heads.nets.base import finish_outputs


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
    ``hidden=0`` one linear layer per output.

    Args:
        input_dim: embedding width H.
        specs: ``(name, kind, k)`` per output.
        hidden: width of the hidden layer; 0: none (:class:`LinearOutputs`).
        output: regression output mode.
        shared: one shared hidden layer instead of one per output.
    """

    def __init__(self, input_dim: int, specs: Sequence[tuple[str, str, int]], *, hidden: int,
                 output: str, shared: bool) -> None:
        super().__init__()
        groups = [list(specs)] if shared else [[s] for s in specs]
        if hidden == 0:
            self.nets = nn.ModuleList([LinearOutputs(input_dim, specs, output=output)])
        else:
            self.nets = nn.ModuleList(build_net("mlp-mtl", input_dim, g, hidden=hidden, output=output)
                                      for g in groups)
        self.tasks = tuple(tuple(s) for s in specs)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:  # x (B, H)
        out: dict[str, torch.Tensor] = {}
        for net in self.nets:
            out.update(net(x))
        return out


class Backbone:
    """The model with what a forward pass needs: normalisation, mask, pooling, autocast."""

    def __init__(self, model: nn.Module, *, do_normalize: bool, use_mask: bool, min_samples: int,
                 layer: int | None, device: torch.device) -> None:
        self.model, self.do_normalize, self.use_mask = model, do_normalize, use_mask
        self.min_samples, self.layer, self.device = min_samples, layer, device
        cfg = model.config
        # SpecAugment in train mode needs at least mask_time_length frames in the padded batch
        mask_len = int(getattr(cfg, "mask_time_length", 1)) if getattr(cfg, "mask_time_prob", 0) > 0 else 1
        stride = int(np.prod(cfg.conv_stride))
        self.min_batch_samples = min_samples + (max(1, mask_len) - 1) * stride
        self._grabbed: torch.Tensor | None = None
        if layer is not None:
            self._hook_layer(layer)

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

