"""Training: the two engines (Lightning, :mod:`twm.train.lightning`; batched ensembles, :mod:`twm.train.batched`)
behind one pipeline (:mod:`twm.train.pipeline`: config → RunSpec → job → engine → run folder), the bare reference
loop both are tested against (:mod:`twm.train.reference`), the callbacks and the config schemas.

Entry point: ``python -m twm.train`` (Hydra; see ``conf/train.yaml``)."""
