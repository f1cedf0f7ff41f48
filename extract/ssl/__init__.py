"""Self-supervised speech models from transformers: every layer in one pass, exact pooling.

``ssl:MODEL`` runs a wav2vec2-style checkpoint (wav2vec2 base and large, HuBERT, WavLM,
data2vec-audio; anything ``AutoModel`` loads with a conv feature encoder and a transformer
encoder), a Whisper encoder or w2v-BERT 2.0, and stores, per clip, the pooled hidden states of the selected layers and optionally
the frame sequences of some layers. ``MODEL`` is a hub id (``facebook/wav2vec2-base``) found in
the local Hugging Face cache or downloaded when online, or a folder written by
``save_pretrained`` (``/models/my-hubert``).

One concept per module:

* :mod:`~extract.ssl.config`: constants, closed choices, option checks;
* :mod:`~extract.ssl.checkpoint`: locate, hash, read and load a checkpoint; ``finetuned.json``;
* :mod:`~extract.ssl.frontend`: the exact masked front end (conv encoder, projection,
  positional conv) per clip and on a padded batch;
* :mod:`~extract.ssl.encoder`: an encoder family = input preparation + front end + the layers
  under a mask + the model's own forward;
* :mod:`~extract.ssl.families`: :data:`ENCODER_FAMILIES`, the family of a config (a new
  family is one Encoder subclass and one line there);
* :mod:`~extract.ssl.whisper`: Whisper's encoder (log-mel, padded 30 s windows, true frames;
  ``whisper_input="trimmed"`` cuts the input to the clip);
* :mod:`~extract.ssl.w2vbert`: w2v-BERT 2.0 (stacked fbank; each clip alone, the exact path);
* :mod:`~extract.ssl.strategy`: the self-check at load and the batching choice;
* :mod:`~extract.ssl.planning`: the corpus-wide batch plan and the groups inside a batch;
* :mod:`~extract.ssl.compute`: :class:`BatchRunner`, the compute paths of a loaded model (the
  padded GPU path: one pinned upload, device-side normalisation, batched exact front end,
  masked layers, one event per batch, the next batch queued before one is collected);
* :mod:`~extract.ssl.extractor`: :class:`SSLExtractor`, registered as ``ssl``.

Hidden states. Index 0 is the input of the first transformer layer (after the positional conv
embedding, and after the encoder layer norm for post-norm models); index ``i`` is the output of
layer ``i`` (what transformers 5 reports as ``hidden_states``; for pre-norm models the final
layer norm is *not* applied to the last index). Every statistic is pooled over a clip's true
frames only.

Long clips. A clip over :data:`CONV_CHUNK_FRAMES` output frames leaves the batched front end;
its conv feature encoder runs alone in chunks (exact). The transformer sees a whole clip at once
when the attention is SDPA (memory linear in the length with flash / memory-efficient kernels).
WavLM only has an eager attention whose memory is quadratic; its clips longer than
:data:`EAGER_MAX_FULL_FRAMES` frames (60 s) run in windows of :data:`EAGER_WINDOW_FRAMES` frames
with :data:`EAGER_WINDOW_CONTEXT` frames of context each side (an approximation, recorded in the
identity); shorter clips are exact.

Devices. CPU computes in float32. CUDA runs under ``torch.autocast(dtype=bfloat16)``: matmuls
and convs in bfloat16, normalisations and softmax in float32; pooling is done in float32. The
positional conv embedding runs in float32 as unfold + batched matmul on CUDA. Inputs travel
through pinned memory with non-blocking copies on a side stream; results come back through
pinned buffers, one CUDA event per batch (no host sync per clip).

Normalisation. When the checkpoint's ``preprocessor_config.json`` says ``do_normalize``, each
clip is scaled to zero mean and unit variance on its own (``(x - mean) / sqrt(var + 1e-7)``,
as ``Wav2Vec2FeatureExtractor`` does) before anything else. Without that file, the fairseq
training setting is assumed: layer-norm conv encoders (large / lv60 / data2vec) were trained on
normalised audio, group-norm ones (base) on raw audio. Clips shorter than the receptive field
(400 samples at 16 kHz) are zero-padded after normalisation to give one frame.

``std`` pooling is the population standard deviation (divisor ``n``).
"""
from __future__ import annotations

from extract.ssl.checkpoint import FINETUNED_FILE, Source, finetuned_info, load_model, locate
from extract.ssl.config import (
    CONV_CHUNK_FRAMES,
    DEVICES,
    EAGER_MAX_FULL_FRAMES,
    EAGER_WINDOW_CONTEXT,
    EAGER_WINDOW_FRAMES,
    FRONTEND_BATCH_SECONDS,
    FRONTEND_MAX_STRETCH,
    HIDDEN_STATES,
    MAX_BATCH_CLIPS,
    NORM_EPS,
    STORAGE_DTYPES,
    STRATEGY_BATCHED,
    STRATEGY_FORWARD,
    STRATEGY_SPLIT,
)
from extract.ssl.compute import BatchRunner
from extract.ssl.encoder import Encoder, normalise_padded, prepare_wave
from extract.ssl.extractor import SSLExtractor
from extract.ssl.families import ENCODER_FAMILIES, encoder_family
from extract.ssl.frontend import ConvFrontEnd, receptive_field

__all__ = [
    "CONV_CHUNK_FRAMES", "DEVICES", "EAGER_MAX_FULL_FRAMES", "EAGER_WINDOW_CONTEXT",
    "EAGER_WINDOW_FRAMES", "ENCODER_FAMILIES", "FINETUNED_FILE", "FRONTEND_BATCH_SECONDS",
    "FRONTEND_MAX_STRETCH", "HIDDEN_STATES", "MAX_BATCH_CLIPS", "NORM_EPS", "STORAGE_DTYPES",
    "STRATEGY_BATCHED", "STRATEGY_FORWARD", "STRATEGY_SPLIT", "BatchRunner", "ConvFrontEnd", "Encoder",
    "SSLExtractor", "Source", "encoder_family", "finetuned_info", "load_model", "locate",
    "normalise_padded", "prepare_wave", "receptive_field",
]
