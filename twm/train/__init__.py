"""Training: the Lightning module, curricula, callbacks, the run pipeline and batched ensembles.

Entry point: ``python -m twm.train`` (Hydra; see ``conf/train.yaml``)."""
