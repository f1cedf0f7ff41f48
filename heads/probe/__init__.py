"""Layer probing: one light head per (layer, pooling) of an SSL feature set, over several seeds.

A probe study reads the pooled SSL fields of one feature set (``pooled_<pooling>``, shape
``(n_layers, hidden)`` per clip) from the store, one layer at a time, fits a head on Train,
selects its hyper-parameters on Val and reports the Val score of every (layer, pooling)::

    WORKDIR/probes/<name>/probe.json    configuration, every (layer, pooling) result, the best
    WORKDIR/probes/<name>/probe.csv     one row per layer; per pooling: score, CI, std
    WORKDIR/probes/<name>/layer_weights.csv   (--weighted-sum) learned layer weights

Nothing is extracted here: a layer that is not stored is an error naming the extract to run.

Protocol (the same as ``train``): features standardised on Train; hyper-parameters chosen on
Val; the reported score is on Val (and on Test when Test has labels). Regression predictions
are clipped to a target's known range after selection, as ``heads.experiment`` does.

What a seed changes. Torch and XGBoost heads: initialisation and batch order. Ridge is a
deterministic convex fit, so a seed selects the training set: seed 0 fits on all of Train and
chooses alpha on Val; seed k > 0 refits that alpha on a bootstrap resample of Train
(``numpy.random.default_rng(k)``). The ``std`` across seeds is therefore training-set (and
initialisation) variability.

Confidence intervals: 95 % percentile bootstrap over Val clips of the seed-mean score. The
same ``n_boot`` resamples of Val clips are used for every layer and pooling (paired), so
differences between layers are not blurred by different draws. The CI is about Val
sampling; the seed spread is reported separately as ``std``.

Speed (ridge). Each layer is read once per pooling (``FeatureStore.read`` with a layer
index, the next one read in a background thread while the current one is fitted). Per seed
and target one eigendecomposition of the centred Gram matrix ``X'WX = V diag(s) V'`` gives
the solutions for every alpha at once, ``b(alpha) = V diag(1/(s + alpha)) V' X'W y``; Val
predictions of all alphas are one matrix product. The bootstrap evaluates all resamples as
weighted moments (one matrix product per resample chunk).

``weighted_sum``: a SUPERB-style head (Yang et al., Interspeech 2021, section 3): a softmax
over learnable per-layer logits weights the (Train-standardised) layers, a linear layer per
target reads the weighted sum. For mean (and last) pooling this equals weighting the frame
sequences before pooling, since both poolings are linear in the frames; for max / std it
is a weighted sum of pooled vectors.

Modules: ``data`` (rows, labels, Train standardisation), ``ridge`` (every alpha from one
eigendecomposition of :class:`heads.classical.RidgeSolver`), ``summary`` (one layer over seeds, its CI by the shared bootstrap of :mod:`heads.scoring`), ``weighted_sum`` (the SUPERB
head), ``study`` (one study end to end and its folder).
"""
from heads.probe.data import (ProbeData, labelled, layer_fields, load_probe_data, standardise,
                              standardise_layers)
from heads.probe.ridge import fit_ridge_task, train_counts
from heads.probe.summary import summarise_seeds
from heads.probe.study import (PROBES_DIR, ProbeConfig, ProbeResult, Progress, load_probes,
                               probe_one, probe_table, run_probe, write_probe, write_text_atomic)
from heads.probe.weighted_sum import WeightedSumConfig, fit_weighted_sum

__all__ = [
    "PROBES_DIR", "ProbeConfig", "ProbeData", "ProbeResult", "Progress",
    "WeightedSumConfig", "fit_ridge_task", "fit_weighted_sum",
    "labelled", "layer_fields", "load_probe_data", "load_probes",
    "probe_one", "probe_table", "run_probe", "standardise", "standardise_layers",
    "summarise_seeds", "train_counts", "write_probe", "write_text_atomic",
]
