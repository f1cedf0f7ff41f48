"""``ssl:MODEL``, the registered extractor: it resolves, describes and delegates.

Finding the checkpoint is :mod:`extract.ssl.checkpoint`, the model's pieces
:mod:`extract.ssl.encoder` (front end: :mod:`extract.ssl.frontend`), the strategy
:mod:`extract.ssl.strategy`, the batches :mod:`extract.ssl.planning`; this module holds the
options, the identity and the compute paths that tie them together.
"""
from __future__ import annotations

import contextlib
import logging
from typing import Any, Iterable, Iterator, Sequence

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
from extract.ssl import checkpoint
from extract.ssl.config import (
    CONV_CHUNK_FRAMES,
    EAGER_MAX_FULL_FRAMES,
    EAGER_WINDOW_CONTEXT,
    EAGER_WINDOW_FRAMES,
    HIDDEN_STATES,
    STRATEGY_BATCHED,
    check_layers,
    check_options,
)
from extract.ssl.compute import BatchRunner, Windows
from extract.ssl.encoder import Encoder
from extract.ssl.families import encoder_family
from extract.ssl.frontend import to_device
from extract.ssl.planning import plan_batches
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
        self.runner_: BatchRunner | None = None

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
                f"{self.arg!r} is a {config.model_type!r} model, not a speech SSL model this extractor "
                f"runs (wav2vec2, hubert, wavlm, data2vec-audio, whisper, wav2vec2-bert, ...)"
            )
        family.check_family_options(opts, self.arg)
        model_class = checkpoint.model_class(self.arg, config)
        self.family_ = family
        self.config_ = config
        self.attn_implementation_ = checkpoint.attention_implementation(model_class)
        n_states = family.num_states(config)
        self.layers_ = check_layers(opts.layers, n_states, "layers")
        self.frames_layers_ = check_layers(opts.frames_layers, n_states, "frames_layers", empty_ok=True)
        self.min_samples_ = family.min_samples(config)
        self.do_normalize_, self.normalize_source_ = checkpoint.read_do_normalize(
            self.arg, self.source_, config
        )
        if not family.normalizes_waveform:
            self.do_normalize_, self.normalize_source_ = False, f"not used ({family.family} features)"
        self._resolved = True

    def _ensure_resolved(self) -> None:
        if not self._resolved:
            self.resolve()

    # -- description ---------------------------------------------------------------------
    def _long_clip_policy(self) -> str | dict[str, Any]:
        if (policy := self.family_.long_clip_policy(self.config_, self.options)) is not None:
            return policy
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
        out = {
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
        if (extra := self.family_.input_identity(self.config_, self.options)) is not None:
            out["input"] = extra
        return out

    def readable_name(self) -> str:
        """``ssl-<model basename>``, e.g. ``ssl-wav2vec2-base``; a fine-tuned folder gives the
        name recorded in its ``finetuned.json`` (``ssl-<base>-ft-<run>``)."""
        return checkpoint.readable_name(self.arg)

    def fields(self) -> dict[str, FieldSpec]:
        """``pooled_<p>`` (n_layers, hidden), ``frames_l<i>`` ragged (hidden,), ``num_frames``."""
        self._ensure_resolved()
        hidden = self.family_.hidden_size(self.config_)
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
        exact = (self.encoder_ or self.family_).exact_forward
        if exact is not None:
            out["exact_path"] = exact
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
        return self.runner_.padding_ratio if self.runner_ is not None else 0.0

    def plan_batches(self, num_samples: Sequence[int]) -> list[list[int]]:
        """Sort clips by length; cut batches of at most ``batch_seconds`` padded audio
        (:func:`extract.ssl.planning.plan_batches`)."""
        return plan_batches(num_samples, batch_seconds=self.options.batch_seconds,
                            min_samples=getattr(self, "min_samples_", 400))

    # -- model -----------------------------------------------------------------------------
    def load(self) -> None:
        """Load the model on the device, pick the batching strategy by a self-check (once: a
        loaded extractor stays loaded, so a caller that loaded it keeps load time out of a run).

        Raises:
            ExtractorUnavailable: the weights cannot be loaded.
            ValueError: ``frontend_batching`` is not auto, on or off.
        """
        if self.model_ is not None:
            return
        self._ensure_resolved()
        model = checkpoint.load_model(self.arg, self.source_, self.attn_implementation_)
        try_batched = wants_batched_frontend(self.frontend_batching, self.device_.type)  # fails early
        self.model_ = model.eval().to(self.device_)
        self.encoder_ = self.family_(self.model_, self.conv_chunk_frames)
        self.encoder_.configure(self.options)
        if self.device_.type == "cuda" and self.family_.exact_forward is None:
            self.encoder_.enable_pos_conv_gemm()
        with torch.inference_mode(), self.autocast():
            self.strategy_ = self_check(self.encoder_, self.prepare, device_type=self.device_.type,
                                        try_batched=try_batched, label=self.arg)
        self.runner_ = BatchRunner(
            self.encoder_, strategy=self.strategy_, prepare=self.prepare, device=self.device_,
            layers=self.layers_, frames_layers=self.frames_layers_, poolings=self.poolings_,
            dtype=self.options.dtype, min_samples=self.min_samples_, do_normalize=self.do_normalize_,
            batch_frames=self.encoder_.num_frames(int(self.options.batch_seconds * SAMPLE_RATE)),
            eager=self.attn_implementation_ == "eager",
            windows=Windows(self.eager_max_full_frames, self.window_frames, self.window_context),
            label=self.arg,
        )
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
        return to_device(torch.from_numpy(x), self.device_)

    def hidden_states(self, signal: np.ndarray) -> list[torch.Tensor]:
        """All hidden states of one clip through the batched path, for inspection and tests.

        Args:
            signal: ``(samples,)`` 16 kHz float32 audio.

        Returns:
            ``num_states`` (layers + 1) tensors ``(frames, hidden)`` float32 on the CPU.
        """
        self._require_loaded()
        with torch.inference_mode(), self.autocast():
            states = self.encoder_.hidden_states(
                [self.prepare(signal)], batched=self.strategy_ == STRATEGY_BATCHED
            )[0]
        return [s.float().cpu() for s in states]

    def _runner(self) -> BatchRunner:
        """The loaded model's :class:`BatchRunner`, with the current window settings."""
        self._require_loaded()
        runner = self.runner_
        runner.windows = Windows(self.eager_max_full_frames, self.window_frames, self.window_context)
        return runner

    def _inference(self) -> contextlib.AbstractContextManager:
        stack = contextlib.ExitStack()
        stack.enter_context(torch.inference_mode())
        stack.enter_context(self.autocast())
        return stack

    def compute_batch(self, signals: list[np.ndarray]) -> list[dict[str, np.ndarray] | Exception]:
        """Features of a batch of clips; a clip that fails gives its exception.

        Args:
            signals: ``(samples,)`` float32 16 kHz clips.

        Returns:
            Per clip: ``pooled_<p>`` ``(n_layers, hidden)``, ``frames_l<i>`` ``(frames, hidden)``
            in the storage dtype and ``num_frames`` (int32 scalar), or the clip's exception.
        """
        runner = self._runner()
        with self._inference():
            pending = runner.launch(signals)
        return runner.complete(pending)

    def compute_stream(
        self, batches: Iterable[list[np.ndarray]]
    ) -> Iterator[list[dict[str, np.ndarray] | Exception]]:
        """:meth:`compute_batch` of each batch in turn, the next one queued on the device before
        the previous one is collected (host work and transfers overlap the compute).

        Yields:
            Per batch, in order, what :meth:`compute_batch` returns for it.
        """
        yield from self._runner().stream(batches, self._inference)

    @property
    def padded_frames_(self) -> int:
        runner = getattr(self, "runner_", None)
        return runner.padded_frames if runner is not None else 0

    @property
    def total_frames_(self) -> int:
        runner = getattr(self, "runner_", None)
        return runner.total_frames if runner is not None else 0
