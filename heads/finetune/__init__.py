"""End-to-end fine-tuning of an SSL backbone with multitask heads (seed 000), audio in.

Unlike the other heads, this stage reads audio, not the store: it trains the backbone itself
and then writes the new model's embeddings back into the same store through the ordinary
extraction path, so that ``list``, ``train``, ``probe`` and ``export`` use them like any set.

What :func:`finetune` does, top to bottom (FIELD_NOTES section 4, seed 000):

1. resolve the base model with :class:`extract.ssl.SSLExtractor` (same lookup, same errors:
   a model that is not SSL, weights missing offline), the tasks and the Train / Val clips;
2. outputs, labels, losses and class weights from :mod:`heads.training` (CCC for regression,
   class-weighted cross-entropy with label smoothing 0.1 for classes), heads from
   :mod:`heads.nets` (per output ``Linear(H,256)-GELU-Linear(256,k)``, i.e. one ``mlp-mtl``
   net per output; clamp output by default), Kendall uncertainty weighting from
   :mod:`heads.training.weighting`;
3. stage 1, frozen backbone: the backbone's embeddings (masked mean over each clip's true
   frames of the last hidden state, or of ``layer``) are computed once in eval mode and the
   heads train on them with AdamW defaults. Frozen weights give the same vectors every epoch,
   so one forward pass replaces ``frozen_epochs`` of them;
4. stage 2, everything unfrozen but the feature encoder (``freeze_feature_encoder``: the CNN
   feature encoder; Whisper's conv stem; w2v-BERT's feature projection):
   AdamW at ``lr`` (4e-5), cosine schedule after ``warmup`` epochs of linear warm-up, the
   model in train mode (dropout, LayerDrop and SpecAugment as its config says), clips batched
   by length and randomly cropped to ``max_seconds``; bfloat16 autocast on CUDA;
5. early stopping on the mean Val headline (patience 2) in each stage, the best state restored;
6. everything is written to a temporary folder renamed to ``WORKDIR/finetuned/<run>/`` at the
   end, so a killed run leaves no half-written model under the final name::

       model/            save_pretrained backbone + preprocessor_config.json + finetuned.json
       heads.pt          head nets, weighting, outputs (label ranges, classes), layer
       config.json       base model, tasks, options, dates, library versions
       metrics.json      Val scores per task (heads.scoring) after stage 1 and at the end;
                         with --ctc / --adversary their numbers under aux (heads.aux_metrics)
       curves.json       per epoch: stage, train losses, Val scores, task weights, lr, speed

:func:`store_embeddings` then runs :func:`extract.run.extract_corpus` with the spec
``ssl:<run>/model``; the set's name comes from ``finetuned.json`` (``ssl-<base>-ft-<run>``) and
its provenance carries the record (base model, run, tasks). Rerunning with the same
``run_name`` and settings reuses the finished model and only completes the extraction.

Example::

    cfg = FinetuneConfig(workdir="runs/avb", model="facebook/data2vec-audio-base",
                         task="avb-high,avb-culture,avb-type,country")
    result = finetune(cfg)
    store_embeddings(result.model_dir, "runs/avb", ExtractOptions(device="auto"))

Paper 004's end-to-end system runs here too: ``ctc`` (alpha) adds a character CTC head on the
frame outputs and ``adversary`` (``speaker:BETA``) a speaker classifier behind gradient reversal
on the pooled output (:mod:`heads.finetune.auxiliary`); ``warmup_ratio``, ``schedule`` and
``grad_accum`` give its schedule (:mod:`heads.finetune.schedule`); a run can hold a Test split and
no Val (the last epoch is kept), and :func:`finetune_cross_validation` runs one fine-tuning per
fold (``finetune --cv`` / ``--test-group``).

The backbone is any encoder family of :mod:`extract.ssl.families` (wav2vec2-style models,
Whisper's encoder with ``whisper_input`` padded or trimmed, w2v-BERT 2.0): its input is prepared
as its extraction prepares it, and only each clip's true frames are pooled
(:mod:`heads.finetune.backbone`).

Modules: ``config`` (FinetuneConfig, names), ``schedule`` (warm-up, decay, accumulation),
``batches`` (decoding, normalisation, batch plans), ``backbone`` (the SSL model's frames and
pooled state, the task heads), ``auxiliary`` (CTC and adversary heads, their targets and scores),
``stages`` (stage 1 and stage 2), ``run`` (:func:`finetune`, the folder, :func:`store_embeddings`),
``crossval`` (one run per fold, the summary).
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from heads.finetune.config import (FINETUNED_DIR, MODEL_SUBDIR, FinetuneConfig, FinetuneResult,
                                   default_run_name, model_basename, readable_name)

# The torch-bound members, imported when first asked for: validating a FinetuneConfig (a
# recipe listing, ``recipes --fidelity``) needs no torch.
_LAZY = {
    "FinetuneHeads": "heads.finetune.backbone",
    "FinetuneCrossValidation": "heads.finetune.crossval",
    "finetune_cross_validation": "heads.finetune.crossval",
    "finetune": "heads.finetune.run",
    "load_finetuned": "heads.finetune.run",
    "store_embeddings": "heads.finetune.run",
}

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from heads.finetune.backbone import FinetuneHeads
    from heads.finetune.crossval import FinetuneCrossValidation, finetune_cross_validation
    from heads.finetune.run import finetune, load_finetuned, store_embeddings

__all__ = ["FinetuneConfig", "FinetuneResult", "FinetuneHeads", "finetune", "store_embeddings",
           "FinetuneCrossValidation", "finetune_cross_validation",
           "load_finetuned", "default_run_name", "model_basename", "readable_name",
           "FINETUNED_DIR", "MODEL_SUBDIR"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'heads.finetune' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
