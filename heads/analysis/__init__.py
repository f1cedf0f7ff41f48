"""Training-free layer analysis of stored feature sets: linear CKA between layers (within one
set and across two sets) and regularised CCA between each layer and acoustic functionals.

Nothing here fits a head or needs torch: it reads the store and writes
``WORKDIR/analyses/<name>/analysis.json`` (``study.py``); the similarity measures live in
``cka.py`` and ``cca.py``, the eGeMAPS descriptor groups in ``descriptors.py``.
"""
