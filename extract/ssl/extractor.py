"""``ssl:MODEL``, the registered extractor: it resolves, describes and delegates.

Finding the checkpoint is :mod:`extract.ssl.checkpoint`, the model's pieces
:mod:`extract.ssl.encoder` (front end: :mod:`extract.ssl.frontend`), the strategy
:mod:`extract.ssl.strategy`, the batches :mod:`extract.ssl.planning`; this module holds the
options, the identity and the compute paths that tie them together.
"""
from __future__ import annotations

import contextlib
import logging
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from extract.base import (
    SAMPLE_RATE,
    ExtractOptions,
    Extractor,
    ExtractorUnavailable,
    FieldSpec,
    register_extractor,
)
from extract.pooling import PoolingAccumulator, masked_pool
from extract.ssl import checkpoint
from extract.ssl.config import (
    CONV_CHUNK_FRAMES,
    EAGER_MAX_FULL_FRAMES,
    EAGER_WINDOW_CONTEXT,
    EAGER_WINDOW_FRAMES,
    FLOAT16_MAX,
    HIDDEN_STATES,
    STRATEGY_BATCHED,
    STRATEGY_SPLIT,
    check_layers,
    check_options,
)
from extract.ssl.encoder import Encoder, encoder_family
from extract.ssl.planning import equal_length_groups, frontend_groups, plan_batches
from extract.ssl.strategy import self_check, wants_batched_frontend

logger = logging.getLogger(__name__)


@register_extractor
class SSLExtractor(Extractor):
    """Pooled hidden states of a transformers speech SSL model (see the package docstring).

    Args:
        arg: hub id or local folder of the checkpoint.
        options: ``layers``, ``poolings``, ``frames_layers``, ``dtype``, ``device`` and
            ``batch_seconds`` are used.

    Example:
        >>> ext = SSLExtractor("facebook/wav2vec2-base", ExtractOptions(layers=(6, 12)))
        >>> ext.readable_name()
        'ssl-wav2vec2-base'
    """

    name = "ssl"
    mode = "batched"

    def __init__(self, arg: str, options: ExtractOptions) -> None:
        super().__init__(arg, options)
        self.conv_chunk_frames = CONV_CHUNK_FRAMES
        self.window_frames = EAGER_WINDOW_FRAMES
        self.window_context = EAGER_WINDOW_CONTEXT
        self.eager_max_full_frames = EAGER_MAX_FULL_FRAMES
        self.frontend_batching = "auto"
        self._resolved = False
        self._weights_id: dict[str, str] | None = None
        self.model_: nn.Module | None = None
        self.encoder_: Encoder | None = None
        self.padded_frames_ = 0
        self.total_frames_ = 0
        self._warned_fp16 = False

    # -- resolve ---------------------------------------------------------------------------
    def resolve(self) -> None:
        """Validate the options, find the checkpoint without downloading when offline.

        Raises:
            ValueError: a pooling, layer, dtype, device or batch_seconds value is invalid, or
                the checkpoint is no speech SSL model this package runs.
            ExtractorUnavailable: the checkpoint is not here and cannot be fetched, or CUDA
                was asked for and is missing.
        """
        opts = self.options
        self.poolings_ = check_options(opts)
        if opts.device == "cuda" and not torch.cuda.is_available():
            raise ExtractorUnavailable(
                "device 'cuda' was asked for but torch sees no CUDA device; use --device cpu or auto"
            )
        self.device_ = torch.device("cuda" if opts.device != "cpu" and torch.cuda.is_available() else "cpu")
        self.source_ = checkpoint.locate(self.arg)
        config = checkpoint.load_config(self.arg, self.source_)
        family = encoder_family(config)
        if family is None:
            raise ValueError(
                f"{self.arg!r} is a {config.model_type!r} model, not a speech SSL model with a conv "
                f"feature encoder (wav2vec2, hubert, wavlm, data2vec-audio, ...)"
            )
        model_class = checkpoint.model_class(self.arg, config)
        self.family_ = family
        self.config_ = config
        self.attn_implementation_ = checkpoint.attention_implementation(model_class)
        n_states = config.num_hidden_layers + 1
        self.layers_ = check_layers(opts.layers, n_states, "layers")
        self.frames_layers_ = check_layers(opts.frames_layers, n_states, "frames_layers", empty_ok=True)
        self.min_samples_ = family.min_samples(config)
        self.do_normalize_, self.normalize_source_ = checkpoint.read_do_normalize(
            self.arg, self.source_, config
        )
        self._resolved = True

    def _ensure_resolved(self) -> None:
        if not self._resolved:
            self.resolve()

    # -- description ---------------------------------------------------------------------
    def _long_clip_policy(self) -> str | dict[str, int]:
        if self.attn_implementation_ != "eager":
            return "full"
        return {
            "max_full_frames": self.eager_max_full_frames,
            "window_frames": self.window_frames,
            "context_frames": self.window_context,
        }

    def identity(self) -> dict[str, Any]:
        """Everything that determines the values (hashed into the feature set's key)."""
        self._ensure_resolved()
        if self._weights_id is None:
            self._weights_id = checkpoint.weights_identity(self.source_)
        return {
            "extractor": self.name,
            "model": self.arg,
            "model_type": self.config_.model_type,
            "weights": self._weights_id,
            "layers": list(self.layers_),
            "poolings": list(self.poolings_),
            "frames_layers": list(self.frames_layers_),
            "dtype": self.options.dtype,
            "normalize": self.do_normalize_,
            "sample_rate": SAMPLE_RATE,
            "min_samples": self.min_samples_,
            "hidden_states": HIDDEN_STATES,
            "std": "population",
            "long_clips": self._long_clip_policy(),
        }

    def readable_name(self) -> str:
        """``ssl-<model basename>``, e.g. ``ssl-wav2vec2-base``; a fine-tuned folder gives the
        name recorded in its ``finetuned.json`` (``ssl-<base>-ft-<run>``)."""
        return checkpoint.readable_name(self.arg)

    def fields(self) -> dict[str, FieldSpec]:
        """``pooled_<p>`` (n_layers, hidden), ``frames_l<i>`` ragged (hidden,), ``num_frames``."""
        self._ensure_resolved()
        hidden = self.config_.hidden_size
        out = {
            f"pooled_{p}": FieldSpec(
                shape=(len(self.layers_), hidden),
                dtype=self.options.dtype,
                attrs={"layers": list(self.layers_), "pooling": p},
            )
            for p in self.poolings_
        }
        for layer in self.frames_layers_:
            out[f"frames_l{layer}"] = FieldSpec(
                shape=(hidden,), dtype=self.options.dtype, ragged=True, attrs={"layer": layer}
            )
        out["num_frames"] = FieldSpec(shape=(), dtype="int32")
        return out

    def provenance(self) -> dict[str, Any]:
        """Library versions, device, compute dtype, attention implementation, strategy."""
        import transformers

        self._ensure_resolved()
        cuda = self.device_.type == "cuda"
        out = {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "device": torch.cuda.get_device_name(self.device_) if cuda else "cpu",
            "compute_dtype": "bfloat16-autocast" if cuda else "float32",
            "attn_implementation": self.attn_implementation_,
            "strategy": getattr(self, "strategy_", None),
            "normalize_source": self.normalize_source_,
            "source": self.source_.kind,
        }
        if self.source_.directory is not None and (info := checkpoint.finetuned_info(self.source_.directory)):
            out["finetuned"] = info
        if self.total_frames_:
            out["padding_ratio"] = round(self.padding_ratio, 4)
        return out

    def warnings_for(self, num_samples: int) -> list[str]:
        """A warning for clips shorter than the receptive field (they are zero-padded)."""
        minimum = getattr(self, "min_samples_", 400)
        if num_samples < minimum:
            return [
                f"clip has {num_samples} samples, fewer than the model's receptive field of {minimum} "
                f"({minimum / SAMPLE_RATE * 1000:.0f} ms); zero-padded to one frame"
            ]
        return []

    @property
    def padding_ratio(self) -> float:
        """Padded frames / all frames the transformer layers ran on so far."""
        return self.padded_frames_ / self.total_frames_ if self.total_frames_ else 0.0

    def plan_batches(self, num_samples: Sequence[int]) -> list[list[int]]:
        """Sort clips by length; cut batches of at most ``batch_seconds`` padded audio
        (:func:`extract.ssl.planning.plan_batches`)."""
        return plan_batches(num_samples, batch_seconds=self.options.batch_seconds,
                            min_samples=getattr(self, "min_samples_", 400))

    # -- model -----------------------------------------------------------------------------
    def load(self) -> None:
        """Load the model on the device, pick the batching strategy by a self-check.

        Raises:
            ExtractorUnavailable: the weights cannot be loaded.
            ValueError: ``frontend_batching`` is not auto, on or off.
        """
        self._ensure_resolved()
        model = checkpoint.load_model(self.arg, self.source_, self.attn_implementation_)
        try_batched = wants_batched_frontend(self.frontend_batching, self.device_.type)  # fails early
        self.model_ = model.eval().to(self.device_)
        self.encoder_ = self.family_(self.model_, self.conv_chunk_frames)
        if self.device_.type == "cuda":
            self.encoder_.enable_pos_conv_gemm()
        with torch.inference_mode(), self.autocast():
            self.strategy_ = self_check(self.encoder_, self.prepare, device_type=self.device_.type,
                                        try_batched=try_batched, label=self.arg)
        logger.info(
            "ssl %s: %s on %s, attention %s, strategy %s, normalize=%s",
            self.arg, self.config_.model_type, self.device_, self.attn_implementation_,
            self.strategy_, self.do_normalize_,
        )

    def autocast(self) -> contextlib.AbstractContextManager:
        """bfloat16 autocast on CUDA; nothing on the CPU (float32)."""
        if self.device_.type == "cuda":
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _require_loaded(self) -> None:
        if self.model_ is None:
            self.load()

    # -- computing -------------------------------------------------------------------------
    def prepare(self, signal: np.ndarray) -> torch.Tensor:
        """Check, normalise, pad to the receptive field, move to the device: ``(samples,)``.

        Raises:
            ValueError: the clip is not 1-D, is empty, or holds nan / inf.
        """
        x = self.family_.prepare(signal, do_normalize=self.do_normalize_, min_samples=self.min_samples_)
        t = torch.from_numpy(x)
        if self.device_.type == "cuda":
            t = t.pin_memory().to(self.device_, non_blocking=True)
        return t

    def hidden_states(self, signal: np.ndarray) -> list[torch.Tensor]:
        """All hidden states of one clip through the batched path, for inspection and tests.

        Args:
            signal: ``(samples,)`` 16 kHz float32 audio.

        Returns:
            ``num_hidden_layers + 1`` tensors ``(frames, hidden)`` float32 on the CPU.
        """
        self._require_loaded()
        with torch.inference_mode(), self.autocast():
            states = self.encoder_.hidden_states(
                [self.prepare(signal)], batched=self.strategy_ == STRATEGY_BATCHED
            )[0]
        return [s.float().cpu() for s in states]

    def compute_batch(self, signals: list[np.ndarray]) -> list[dict[str, np.ndarray] | Exception]:
        """Features of a batch of clips; a clip that fails gives its exception.

        Args:
            signals: ``(samples,)`` float32 16 kHz clips.

        Returns:
            Per clip: ``pooled_<p>`` ``(n_layers, hidden)``, ``frames_l<i>`` ``(frames, hidden)``
            in the storage dtype and ``num_frames`` (int32 scalar), or the clip's exception.
        """
        self._require_loaded()
        results: list[dict[str, np.ndarray] | Exception | None] = [None] * len(signals)
        waves: dict[int, torch.Tensor] = {}
        for i, signal in enumerate(signals):
            try:
                waves[i] = self.prepare(signal)
            except Exception as exc:  # noqa: BLE001 - one bad clip never sinks the batch
                results[i] = exc
        with torch.inference_mode(), self.autocast():
            if self.strategy_ in (STRATEGY_BATCHED, STRATEGY_SPLIT):
                self._compute_split(waves, results)
            else:
                self._compute_forward(waves, results)
        return results  # type: ignore[return-value]

    def _frontends(self, waves: dict[int, torch.Tensor], results: list) -> dict[int, torch.Tensor]:
        """Hidden state 0 ``(T, H)`` of each clip; a clip that fails gets its exception.

        With :data:`STRATEGY_BATCHED`, clips go through the batched front end in the groups of
        :func:`extract.ssl.planning.frontend_groups`; clips longer than one conv chunk (memory)
        and the clips of a group that fails run one by one.
        """
        encoder = self.encoder_
        fronts: dict[int, torch.Tensor] = {}
        alone = list(waves)
        if self.strategy_ == STRATEGY_BATCHED:
            alone = [i for i in waves if encoder.num_frames(waves[i].shape[0]) > encoder.chunk_frames]
            skip = set(alone)
            for group in frontend_groups({i: waves[i].shape[0] for i in waves if i not in skip}):
                try:
                    fronts.update(zip(group, encoder.frontend_batch([waves[i] for i in group])))
                except Exception as exc:  # noqa: BLE001 - e.g. out of memory: clip by clip
                    logger.warning("ssl front end of %d clips failed (%s); clip by clip", len(group), exc)
                    if self.device_.type == "cuda":
                        torch.cuda.empty_cache()
                    alone.extend(group)
        for i in alone:
            try:
                fronts[i] = encoder.frontend(waves[i])  # (T, H)
            except Exception as exc:  # noqa: BLE001
                results[i] = exc
        return fronts

    def _compute_split(self, waves: dict[int, torch.Tensor], results: list) -> None:
        fronts = self._frontends(waves, results)
        # A clip longer than the batch budget runs alone (unpadded, so SDPA needs no mask and
        # keeps its linear-memory kernels), whatever batch the caller formed.
        budget = self.encoder_.num_frames(int(self.options.batch_seconds * SAMPLE_RATE))
        for i in [i for i, f in fronts.items() if f.shape[0] > budget or self._windowed(f.shape[0])]:
            front = fronts.pop(i)
            try:
                if self._windowed(front.shape[0]):
                    results[i] = self._run_windowed(front)
                else:
                    results[i] = self._run_batched([front])[0]
            except Exception as exc:  # noqa: BLE001
                results[i] = exc
        if not fronts:
            return
        order = list(fronts)
        try:
            outs = self._run_batched([fronts[i] for i in order])
        except Exception as exc:  # noqa: BLE001 - e.g. out of memory: retry clip by clip
            if len(order) == 1:
                results[order[0]] = exc
                return
            logger.warning("ssl batch of %d clips failed (%s); retrying one clip at a time", len(order), exc)
            if self.device_.type == "cuda":
                torch.cuda.empty_cache()
            outs = []
            for i in order:
                try:
                    outs.append(self._run_batched([fronts[i]])[0])
                except Exception as exc_one:  # noqa: BLE001
                    outs.append(exc_one)
        for i, out in zip(order, outs):
            results[i] = out

    def _windowed(self, frames: int) -> bool:
        return self.attn_implementation_ == "eager" and frames > self.eager_max_full_frames

    def _compute_forward(self, waves: dict[int, torch.Tensor], results: list) -> None:
        """Fallback: the model's own forward on each clip, equal lengths batched (no padding)."""
        for chunk in equal_length_groups({i: w.shape[0] for i, w in waves.items()}):
            try:
                batch = torch.stack([waves[i] for i in chunk])  # (B, samples), equal lengths
                states = self.encoder_.reference_hidden_states(batch)
                frames = states[0].shape[1]
                outs = self._collect(enumerate(states), torch.full((len(chunk),), frames))
            except Exception as exc:  # noqa: BLE001
                outs = [exc] * len(chunk)
            for i, out in zip(chunk, outs):
                results[i] = out

    def _run_batched(self, fronts: list[torch.Tensor]) -> list[dict[str, np.ndarray] | Exception]:
        lengths = torch.tensor([f.shape[0] for f in fronts])
        x0 = nn.utils.rnn.pad_sequence(fronts, batch_first=True)  # (B, T, H)
        padded = x0.shape[0] * x0.shape[1]
        self.padded_frames_ += padded - int(lengths.sum())
        self.total_frames_ += padded
        logger.debug(
            "ssl batch: %d clips, %d frames, padding ratio %.3f (cumulative %.3f)",
            len(fronts), x0.shape[1], 1 - int(lengths.sum()) / padded, self.padding_ratio,
        )
        stop = max(self.layers_ + self.frames_layers_)
        return self._collect(self.encoder_.run_layers(x0, lengths, stop), lengths)

    def _collect(
        self, states: Iterator[tuple[int, torch.Tensor]], lengths: torch.Tensor
    ) -> list[dict[str, np.ndarray] | Exception]:
        """Pool the selected layers of a padded batch and keep the frames asked for."""
        wanted, frames_wanted = set(self.layers_), set(self.frames_layers_)
        pooled: list[torch.Tensor] = []  # per selected layer: (B, P, H)
        frames: dict[int, torch.Tensor] = {}
        for i, h in states:
            if i in wanted:
                pools = masked_pool(h.float(), lengths, self.poolings_)
                pooled.append(torch.stack([pools[p] for p in self.poolings_], dim=1))
            if i in frames_wanted:
                frames[i] = h.float()
        host = self._to_host(torch.stack(pooled, dim=2))  # (B, P, n_layers, H)
        host_frames = {i: self._to_host(f) for i, f in frames.items()}
        outs: list[dict[str, np.ndarray] | Exception] = []
        for b, n in enumerate(lengths.tolist()):
            clip_frames = {i: f[b, :n] for i, f in host_frames.items()}
            outs.append(self._finish({p: host[b, k] for k, p in enumerate(self.poolings_)}, clip_frames, n))
        return outs

    def _run_windowed(self, x0: torch.Tensor) -> dict[str, np.ndarray] | Exception:
        """A long clip of an eager-attention model, window by window (approximate)."""
        total = x0.shape[0]
        acc = PoolingAccumulator(self.poolings_)
        frames: dict[int, list[torch.Tensor]] = {i: [] for i in self.frames_layers_}
        stop = max(self.layers_ + self.frames_layers_)
        for c0 in range(0, total, self.window_frames):
            c1 = min(total, c0 + self.window_frames)
            s, e = max(0, c0 - self.window_context), min(total, c1 + self.window_context)
            selected = []
            for i, h in self.encoder_.run_layers(x0[None, s:e], torch.tensor([e - s]), stop):
                core = h[0, c0 - s:c1 - s].float()  # (c1 - c0, H)
                if i in self.layers_:
                    selected.append(core)
                if i in frames:
                    frames[i].append(self._to_host(core))
            acc.update(torch.stack(selected, dim=1))  # (c1 - c0, n_layers, H)
        pooled = {p: self._to_host(v) for p, v in acc.result().items()}
        return self._finish(pooled, {i: torch.cat(f) for i, f in frames.items()}, total)

    def _to_host(self, t: torch.Tensor) -> torch.Tensor:
        if t.device.type != "cuda":
            return t
        host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
        host.copy_(t, non_blocking=True)
        torch.cuda.current_stream(t.device).synchronize()
        return host

    def _finish(
        self, pooled: dict[str, torch.Tensor], frames: dict[int, torch.Tensor], num_frames: int
    ) -> dict[str, np.ndarray] | Exception:
        """Host tensors of one clip -> the stored arrays; non-finite output is an error."""
        out: dict[str, np.ndarray] = {}
        for p, v in pooled.items():
            out[f"pooled_{p}"] = v.numpy()
        for i, f in frames.items():
            out[f"frames_l{i}"] = f.numpy()
        for key, value in out.items():
            if not np.isfinite(value).all():
                return ValueError(f"the model produced non-finite values in {key}")
            out[key] = self._to_storage(value)
        out["num_frames"] = np.array(num_frames, dtype=np.int32)
        return out

    def _to_storage(self, value: np.ndarray) -> np.ndarray:
        if self.options.dtype == "float32":
            return np.ascontiguousarray(value, dtype=np.float32)
        if np.abs(value).max(initial=0.0) > FLOAT16_MAX:
            if not self._warned_fp16:
                logger.warning(
                    "ssl %s: values beyond the float16 range were clipped to +-%g; use --dtype float32",
                    self.arg, FLOAT16_MAX,
                )
                self._warned_fp16 = True
            value = np.clip(value, -FLOAT16_MAX, FLOAT16_MAX)
        return value.astype(np.float16)
