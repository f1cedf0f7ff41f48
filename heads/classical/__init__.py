"""Classical heads (scikit-learn, XGBoost) with hyper-parameter selection on Val.

Modules: ``checks`` (features and targets), ``selection`` (the protocol: the Val search,
:func:`fit_select`), ``ridge`` (THE ridge solver, used by ``probe`` too, and the ridge head), ``logreg``, ``svm``, ``xgb``.
Importing the package registers every head.

One public entry point, :func:`~heads.classical.selection.fit_select`; every head is a :class:`heads.base.Head` of family
``classical`` in :data:`heads.base.HEADS` (:func:`classical_heads` lists them). Every head handles both target kinds:

=========  ==========================================  ======================================
head       regression (y: (n,) or (n, k) floats)       classification (y: integer codes)
=========  ==========================================  ======================================
ridge      ``Ridge`` (multi-column natively)           ``RidgeClassifier``, balanced weights
logreg     ``Ridge`` (same search as ``ridge``)        ``LogisticRegression``, balanced
svr, svc   ``SVR`` on standardised targets, one        ``SVC``, balanced
           model per column for (n, k)
xgb        ``XGBRegressor`` (multi-output natively)    ``XGBClassifier``, balanced sample
                                                       weights
=========  ==========================================  ======================================

``svr`` and ``svc`` are two names for the same support-vector family (papers and configs use
either); the kind picks SVR or SVC. Above :data:`SVM_KERNEL_MAX_ROWS` training rows the RBF
kernel machines (quadratic in n) are replaced by ``LinearSVR`` / ``LinearSVC``; the chosen
``kernel`` (``"rbf"`` or ``"linear"``) is part of the params and a grid may set it. SVR
targets are standardised on Train (``TransformedTargetRegressor``) so that ``epsilon=0.1`` and
the C grid mean the same for every target scale.

Default grids (ties go to the first entry in grid order):

* ridge: ``alpha`` in ``logspace(-2, 4, 13)``;
* logreg: ``C`` in ``logspace(-3, 2, 6)`` (regression: the ridge ``alpha`` grid);
* svr / svc: ``C`` in ``[0.01, 0.1, 1, 10]``;
* xgb: ``max_depth`` in {3, 6} x ``n_estimators`` in {200, 500}, learning rate 0.05,
  ``tree_method="hist"``, early stopping on Val after 50 rounds without improvement,
  ``device="cuda"`` when ``torch.cuda.is_available()`` (torch imported lazily) else CPU.

Protocol. Features are standardised by a ``StandardScaler`` fitted on Train only; it is the
first step of the returned ``Pipeline``. Each grid point is fitted on Train and scored on Val
with ``score_fn(y_val, prediction)``, on the prediction clipped to the target's label range
when one is known (what is reported); the best model is returned **as fitted on Train**. It is
not refitted on Train + Val, so ``val_score`` is the honest score of the returned model on
data it did not train on; it is still optimistic as an estimate of Test performance, since
Val chose the hyper-parameters (and, for xgb, the number of trees). Report Test scores for
claims.

Ridge search: one :class:`~heads.classical.ridge.RidgeSolver` (one Gram matrix) per target, one
Cholesky solve per alpha (the module ``ridge`` says why that, not an eigendecomposition, is the
cheaper path there).

Seeds: every classical head is deterministic as the command line runs it (convex fits; xgb's
default grid has no row or column subsampling), so ``seeded`` is False and ``--seeds N > 1`` is
refused.

Inputs are checked: rows with NaN labels are refused (exclude unlabelled rows first), rows
with NaN / infinite features are refused (check the feature set). Class weights are
``"balanced"`` (n / (classes x count)) because UAR is the classification metric.
"""
from heads.classical.selection import (KINDS, ClassicalHead, FitSelection, GridBest, Problem,
                                       classical_heads, fit_select)
from heads.classical.ridge import RIDGE_ALPHAS, RidgeHead, RidgeSolver, ridge_search
from heads.classical.logreg import LOGREG_CS, LogRegHead
from heads.classical.svm import SVM_CS, SVM_KERNEL_MAX_ROWS, SVCHead, SVRHead
from heads.classical.xgb import XGB_EARLY_STOPPING_ROUNDS, XGB_LEARNING_RATE, XGBHead, xgb_device

__all__ = [
    "KINDS", "LOGREG_CS", "RIDGE_ALPHAS", "SVM_CS", "SVM_KERNEL_MAX_ROWS",
    "XGB_EARLY_STOPPING_ROUNDS", "XGB_LEARNING_RATE", "ClassicalHead", "FitSelection",
    "GridBest", "LogRegHead", "Problem", "RidgeHead", "RidgeSolver", "SVCHead", "SVRHead",
    "XGBHead", "classical_heads", "fit_select", "ridge_search", "xgb_device",
]
