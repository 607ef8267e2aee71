"""A training job: :mod:`~breastcls.training.train` (a run as named stages: record the run,
prepare the data, fit, evaluate the final model), its stages :mod:`~breastcls.training.checks`
(up-front checks), :mod:`~breastcls.training.data` (scan, split, batches),
:mod:`~breastcls.training.run` (the run folder's records and status) and
:mod:`~breastcls.training.fit` (build or restore, fit), :mod:`~breastcls.training.crossval` (nested
cross-validation and the Spanhol protocol), :mod:`~breastcls.training.callbacks` (what the fit
stage hands Keras: resumable checkpoints, history, hooks, progress) and
:mod:`~breastcls.training.distribute` (``tf.distribute`` strategies).

:func:`breastcls.train`, :func:`breastcls.resume` and :func:`breastcls.cross_validate` are the
entry points; this package's top level imports nothing, so that importing a submodule stays
cheap.
"""
