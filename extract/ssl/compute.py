"""The compute paths of one loaded model: batch in, stored arrays out.

:class:`BatchRunner` runs a planned batch by the strategy the self-check chose:

* :data:`STRATEGY_BATCHED` (CUDA by default): the padded path. The host checks each clip and
  writes the batch, sorted by length, into one pinned buffer; one non-blocking copy (on a side
  stream) takes it to the device, where the clips are normalised together (float64), the exact
  front end runs on groups of similar length, and the layers run on the padded batch under a
  mask. Pooled values travel back through pinned memory, and the batch's completion is one
  CUDA event: nothing waits for the device per clip, and with :meth:`BatchRunner.stream` the
  next batch is queued before the previous one is collected, so host work and transfers
  overlap the device's compute.
* :data:`STRATEGY_SPLIT`: the front end clip by clip, the layers on the padded batch.
* :data:`STRATEGY_FORWARD`: the model's own forward per clip (equal lengths batched).

A clip that fails gives its exception; one bad clip never sinks the batch.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from extract.pooling import PoolingAccumulator, masked_pool
from extract.ssl.config import FLOAT16_MAX, STRATEGY_BATCHED, STRATEGY_SPLIT
from extract.ssl.encoder import Encoder, check_clip
from extract.ssl.frontend import to_device
from extract.ssl.planning import frontend_groups

logger = logging.getLogger(__name__)

Result = dict[str, np.ndarray] | Exception


@dataclass
class Pending:
    """A batch whose device work is queued; :meth:`BatchRunner.complete` collects it.

    Attributes:
        results: per input clip, its result once known (``None``: still on the device).
        rows: input index of each row of the device batch still to collect.
        frames: true frame count of each of those rows.
        pooled: host ``(rows, poolings, layers, hidden)`` float32 being filled.
        frames_host: layer -> host ``(rows, frames, hidden)`` float32 being filled.
        event: recorded after the copies (CUDA), ``None`` on the CPU.
    """

    results: list[Any]
    rows: list[int] = field(default_factory=list)
    frames: list[int] = field(default_factory=list)
    pooled: torch.Tensor | None = None
    frames_host: dict[int, torch.Tensor] = field(default_factory=dict)
    event: Any = None


@dataclass
class Windows:
    """Long clips of eager-attention models: whole up to ``max_full`` frames, else windows."""

    max_full: int
    frames: int
    context: int


class BatchRunner:
    """Runs batches of one loaded model (see the module docstring).

    Args:
        encoder: the model's encoder.
        strategy: the self-check's choice.
        prepare: one clip -> its prepared input on the device (split and forward paths).
        device: the model's device.
        layers, frames_layers: hidden states pooled, and those whose frames are kept.
        poolings: canonical pooling names.
        dtype: storage dtype, ``float16`` or ``float32``.
        min_samples: the receptive field (shorter clips are zero-padded to it).
        do_normalize: normalise each clip.
        batch_frames: frames of the batch budget; a longer clip runs alone.
        eager: the attention is eager (long clips may run in windows).
        windows: the window settings (read at each call: the extractor may change them).
        label: names the model in log messages.
    """

    def __init__(self, encoder: Encoder, *, strategy: str, prepare: Callable[[np.ndarray], torch.Tensor],
                 device: torch.device, layers: Sequence[int], frames_layers: Sequence[int],
                 poolings: Sequence[str], dtype: str, min_samples: int, do_normalize: bool,
                 batch_frames: int, eager: bool, windows: Windows, label: str) -> None:
        self.encoder, self.strategy, self.prepare, self.device = encoder, strategy, prepare, device
        self.layers, self.frames_layers = tuple(layers), tuple(frames_layers)
        self.poolings, self.dtype, self.min_samples = tuple(poolings), dtype, min_samples
        self.do_normalize, self.batch_frames, self.eager = do_normalize, batch_frames, eager
        self.windows, self.label = windows, label
        self.stop = max(self.layers + self.frames_layers)
        self.padded_frames = 0
        self.total_frames = 0
        self.warned_fp16 = False
        self.cuda = device.type == "cuda"
        self.copy_stream = torch.cuda.Stream(device) if self.cuda else None

    # -- entry points ------------------------------------------------------------------------
    def launch(self, signals: list[np.ndarray]) -> Pending:
        """Queue a batch on the device (call under inference mode and the autocast)."""
        if self.strategy == STRATEGY_BATCHED:
            return self._launch_padded(signals)
        results: list[Any] = [None] * len(signals)
        waves: dict[int, torch.Tensor] = {}
        for i, signal in enumerate(signals):
            try:
                waves[i] = self.prepare(signal)
            except Exception as exc:  # noqa: BLE001 - one bad clip never sinks the batch
                results[i] = exc
        if self.strategy == STRATEGY_SPLIT:
            self._compute_split(waves, results)
        else:
            self._compute_forward(waves, results)
        return Pending(results)

    def complete(self, pending: Pending) -> list[Result]:
        """Wait for a launched batch (one event) and turn its rows into stored arrays."""
        if pending.event is not None:
            pending.event.synchronize()
        if pending.pooled is not None:
            outs = self._unpack(pending.pooled, pending.frames_host, pending.frames)
            for i, out in zip(pending.rows, outs):
                pending.results[i] = out
        return pending.results

    def stream(self, batches: Iterable[list[np.ndarray]], context: Callable[[], Any]) -> Iterator[list[Result]]:
        """Results of each batch, in order, the next batch queued before one is collected.

        Args:
            batches: lists of clips.
            context: a fresh context manager (inference mode + autocast) for each launch.
        """
        pending: Pending | None = None
        for signals in batches:
            with context():
                launched = self.launch(signals)
            if pending is not None:
                yield self.complete(pending)
            pending = launched
        if pending is not None:
            yield self.complete(pending)

    @property
    def padding_ratio(self) -> float:
        """Padded frames / all frames the transformer layers ran on so far."""
        return self.padded_frames / self.total_frames if self.total_frames else 0.0

    # -- the padded path -----------------------------------------------------------------
    def _upload(self, host: torch.Tensor) -> torch.Tensor:
        """A pinned host tensor on the device, copied on the side stream (CPU: itself)."""
        if not self.cuda:
            return host
        with torch.cuda.stream(self.copy_stream):
            dev = host.to(self.device, non_blocking=True)
        current = torch.cuda.current_stream(self.device)
        current.wait_stream(self.copy_stream)
        dev.record_stream(current)
        return dev

    def _launch_padded(self, signals: list[np.ndarray]) -> Pending:
        results: list[Any] = [None] * len(signals)
        checked: dict[int, np.ndarray] = {}
        for i, signal in enumerate(signals):
            try:
                checked[i] = check_clip(signal)
            except Exception as exc:  # noqa: BLE001
                results[i] = exc
        if not checked:
            return Pending(results)
        rows = sorted(checked, key=lambda i: (checked[i].shape[0], i))  # ascending length
        true_n = [int(checked[i].shape[0]) for i in rows]
        n_in = [max(n, self.min_samples) for n in true_n]
        host = torch.zeros((len(rows), max(n_in)), dtype=torch.float32, pin_memory=self.cuda)
        buffer = host.numpy()
        for b, i in enumerate(rows):
            buffer[b, :true_n[b]] = checked[i]
        x = self._upload(host)  # (B, S)
        n_dev = to_device(torch.tensor(true_n, dtype=torch.long), self.device)
        x = self.encoder.prepare_padded(x, n_dev, do_normalize=self.do_normalize)
        x0, frames, ok = self._frontends_padded(x, n_in, [rows[b] for b in range(len(rows))], results)

        keep: list[int] = []
        for b in ok:
            if frames[b] > self.batch_frames or self._windowed(frames[b]):
                # alone (unpadded: SDPA needs no mask and keeps its linear-memory kernels)
                i = rows[b]
                try:
                    front = x0[b, :frames[b]]
                    results[i] = self._run_windowed(front) if self._windowed(frames[b]) else \
                        self._run_batched([front])[0]
                except Exception as exc:  # noqa: BLE001
                    results[i] = exc
            else:
                keep.append(b)
        if not keep:
            return Pending(results)
        width = max(frames[b] for b in keep)
        if keep == list(range(len(keep))):
            xk = x0[:len(keep), :width]
        else:  # a front end failed in the middle: gather the rows that remain
            xk = torch.index_select(x0, 0, to_device(torch.tensor(keep), self.device))[:, :width]
        lengths = [frames[b] for b in keep]
        try:
            pooled, kept_frames = self._pool_layers(self._layers(xk, lengths), lengths)
        except Exception as exc:  # noqa: BLE001 - e.g. out of memory: retry clip by clip
            if len(keep) == 1:
                results[rows[keep[0]]] = exc
                return Pending(results)
            logger.warning("ssl batch of %d clips failed (%s); retrying one clip at a time", len(keep), exc)
            if self.cuda:
                torch.cuda.empty_cache()
            for b in keep:
                try:
                    results[rows[b]] = self._run_batched([x0[b, :frames[b]]])[0]
                except Exception as exc_one:  # noqa: BLE001
                    results[rows[b]] = exc_one
            return Pending(results)
        host_pooled, host_frames, event = self._to_host(pooled, kept_frames)
        return Pending(results, [rows[b] for b in keep], lengths, host_pooled, host_frames, event)

    def _frontends_padded(self, x: torch.Tensor, n_in: list[int], inputs: list[int],
                          results: list) -> tuple[torch.Tensor, list[int], list[int]]:
        """Hidden state 0 of a sorted padded batch: ``(x0 (B, T, H) zero-padded, frames, ok rows)``.

        Clips longer than one conv chunk (memory) run alone, in chunks; the others go through
        the batched front end in the groups of :func:`extract.ssl.planning.frontend_groups`
        (contiguous rows, the batch being sorted); a group that fails runs clip by clip.
        """
        encoder = self.encoder
        frames = encoder.frame_counts(n_in)
        hidden = encoder.hidden_size(encoder.model.config)
        x0 = torch.zeros((len(n_in), max(frames), hidden), dtype=torch.float32, device=x.device)
        alone = [b for b in range(len(n_in)) if frames[b] > encoder.chunk_frames]
        skip = set(alone)
        for group in frontend_groups({b: n_in[b] for b in range(len(n_in)) if b not in skip}):
            r0, r1 = group[0], group[-1] + 1
            assert group == list(range(r0, r1)), group  # rows are sorted by length
            try:
                out, _ = encoder.frontend_padded(x[r0:r1, :n_in[r1 - 1]], n_in[r0:r1])
                x0[r0:r1, :out.shape[1]] = out
            except Exception as exc:  # noqa: BLE001 - e.g. out of memory: clip by clip
                logger.warning("ssl front end of %d clips failed (%s); clip by clip", len(group), exc)
                if self.cuda:
                    torch.cuda.empty_cache()
                alone.extend(group)
        failed = set()
        for b in sorted(alone):
            try:
                front = encoder.frontend(x[b, :n_in[b]])  # (T, H)
                x0[b, :front.shape[0]] = front
            except Exception as exc:  # noqa: BLE001
                results[inputs[b]] = exc
                failed.add(b)
        return x0, frames, [b for b in range(len(n_in)) if b not in failed]

    # -- the split and forward paths ---------------------------------------------------------
    def _compute_split(self, waves: dict[int, torch.Tensor], results: list) -> None:
        fronts: dict[int, torch.Tensor] = {}
        for i, wave in waves.items():
            try:
                fronts[i] = self.encoder.frontend(wave)  # (T, H)
            except Exception as exc:  # noqa: BLE001
                results[i] = exc
        # A clip longer than the batch budget runs alone (unpadded, so SDPA needs no mask and
        # keeps its linear-memory kernels), whatever batch the caller formed.
        for i in [i for i, f in fronts.items() if f.shape[0] > self.batch_frames or self._windowed(f.shape[0])]:
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
            if self.cuda:
                torch.cuda.empty_cache()
            outs = []
            for i in order:
                try:
                    outs.append(self._run_batched([fronts[i]])[0])
                except Exception as exc_one:  # noqa: BLE001
                    outs.append(exc_one)
        for i, out in zip(order, outs):
            results[i] = out

    def _compute_forward(self, waves: dict[int, torch.Tensor], results: list) -> None:
        """The model's own forward on each clip, in the encoder's exact groups (by default
        equal lengths: no padding)."""
        for chunk in self.encoder.forward_groups({i: w.shape[0] for i, w in waves.items()}):
            try:
                states, lengths = self.encoder.forward_batch([waves[i] for i in chunk])
                outs = self._collect(enumerate(states), lengths)
            except Exception as exc:  # noqa: BLE001
                outs = [exc] * len(chunk)
            for i, out in zip(chunk, outs):
                results[i] = out

    # -- layers, pooling, transfer ---------------------------------------------------------
    def _windowed(self, frames: int) -> bool:
        return self.eager and frames > self.windows.max_full

    def _layers(self, x0: torch.Tensor, lengths: list[int]) -> Iterator[tuple[int, torch.Tensor]]:
        """The hidden states of a zero-padded batch, counting its padding."""
        padded = x0.shape[0] * x0.shape[1]
        true = sum(lengths)
        self.padded_frames += padded - true
        self.total_frames += padded
        logger.debug("ssl batch: %d clips, %d frames, padding ratio %.3f (cumulative %.3f)",
                     len(lengths), x0.shape[1], 1 - true / padded, self.padding_ratio)
        return self.encoder.run_layers(x0, lengths, self.stop)

    def _run_batched(self, fronts: list[torch.Tensor]) -> list[Result]:
        lengths = [f.shape[0] for f in fronts]
        x0 = nn.utils.rnn.pad_sequence(fronts, batch_first=True)  # (B, T, H)
        return self._collect(self._layers(x0, lengths), lengths)

    def _pool_layers(self, states: Iterable[tuple[int, torch.Tensor]], lengths: list[int]
                     ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """Pool the selected layers on the device: ``(B, P, n_layers, H)`` and kept frames."""
        wanted, frames_wanted = set(self.layers), set(self.frames_layers)
        pooled: list[torch.Tensor] = []  # per selected layer: (B, P, H)
        frames: dict[int, torch.Tensor] = {}
        n_dev = None
        for i, h in states:
            if n_dev is None:
                n_dev = to_device(torch.tensor(lengths, dtype=torch.long), h.device)
            if i in wanted:
                pools = masked_pool(h.float(), n_dev, self.poolings)
                pooled.append(torch.stack([pools[p] for p in self.poolings], dim=1))
            if i in frames_wanted:
                frames[i] = h.float()
        return torch.stack(pooled, dim=2), frames

    def _to_host(self, pooled: torch.Tensor, frames: dict[int, torch.Tensor]
                 ) -> tuple[torch.Tensor, dict[int, torch.Tensor], Any]:
        """Start the copies to pinned host memory; the returned event marks their end."""
        if not self.cuda:
            return pooled, frames, None

        def copy(t: torch.Tensor) -> torch.Tensor:
            host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
            host.copy_(t, non_blocking=True)
            return host

        host_pooled, host_frames = copy(pooled), {i: copy(f) for i, f in frames.items()}
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(self.device))
        return host_pooled, host_frames, event

    def _collect(self, states: Iterable[tuple[int, torch.Tensor]], lengths: list[int]) -> list[Result]:
        """Pool, copy to the host and unpack a padded batch now (the synchronous form)."""
        pooled, frames = self._pool_layers(states, lengths)
        host_pooled, host_frames, event = self._to_host(pooled, frames)
        if event is not None:
            event.synchronize()
        return self._unpack(host_pooled, host_frames, lengths)

    def _unpack(self, pooled: torch.Tensor, frames: dict[int, torch.Tensor], lengths: list[int]) -> list[Result]:
        """Host tensors of a batch -> per clip the stored arrays (one numpy view per tensor)."""
        pooled_np = pooled.numpy()  # (B, P, n_layers, H)
        frames_np = {i: f.numpy() for i, f in frames.items()}
        return [
            self._finish({p: pooled_np[b, k] for k, p in enumerate(self.poolings)},
                         {i: f[b, :n] for i, f in frames_np.items()}, n)
            for b, n in enumerate(lengths)
        ]

    def _run_windowed(self, x0: torch.Tensor) -> Result:
        """A long clip of an eager-attention model, window by window (approximate)."""
        total = x0.shape[0]
        win = self.windows
        acc = PoolingAccumulator(self.poolings)
        frames: dict[int, list[np.ndarray]] = {i: [] for i in self.frames_layers}
        for c0 in range(0, total, win.frames):
            c1 = min(total, c0 + win.frames)
            s, e = max(0, c0 - win.context), min(total, c1 + win.context)
            selected = []
            for i, h in self.encoder.run_layers(x0[None, s:e], [e - s], self.stop):
                core = h[0, c0 - s:c1 - s].float()  # (c1 - c0, H)
                if i in self.layers:
                    selected.append(core)
                if i in frames:
                    frames[i].append(core.cpu().numpy())
            acc.update(torch.stack(selected, dim=1))  # (c1 - c0, n_layers, H)
        pooled = {p: v.cpu().numpy() for p, v in acc.result().items()}
        return self._finish(pooled, {i: np.concatenate(f) for i, f in frames.items()}, total)

    def _finish(self, pooled: dict[str, np.ndarray], frames: dict[int, np.ndarray], num_frames: int) -> Result:
        """Host arrays of one clip -> the stored arrays; non-finite output is an error."""
        out: dict[str, np.ndarray] = {f"pooled_{p}": v for p, v in pooled.items()}
        out.update({f"frames_l{i}": f for i, f in frames.items()})
        for key, value in out.items():
            if not np.isfinite(value).all():
                return ValueError(f"the model produced non-finite values in {key}")
            out[key] = self._to_storage(value)
        out["num_frames"] = np.array(num_frames, dtype=np.int32)
        return out

    def _to_storage(self, value: np.ndarray) -> np.ndarray:
        if self.dtype == "float32":
            return np.ascontiguousarray(value, dtype=np.float32)
        if np.abs(value).max(initial=0.0) > FLOAT16_MAX:
            if not self.warned_fp16:
                logger.warning(
                    "ssl %s: values beyond the float16 range were clipped to +-%g; use --dtype float32",
                    self.label, FLOAT16_MAX,
                )
                self.warned_fp16 = True
            value = np.clip(value, -FLOAT16_MAX, FLOAT16_MAX)
        return value.astype(np.float16)
