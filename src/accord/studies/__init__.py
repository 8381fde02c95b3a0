"""The studies floor, above the trainer: benchmarks, ablations, sweeps and robustness, each a caller of one
primitive that trains named configs over seeds on a cached dataset and returns rows.

* :mod:`.runner`: :func:`~accord.studies.runner.run_configs` (the primitive), :class:`~accord.studies.runner.Row`,
  :class:`~accord.studies.runner.DatasetCache` (one built dataset per :meth:`~accord.config.DataConfig.cache_key`);
* :mod:`.benchmark`: ``accord benchmark`` (methods side by side; the conflicting/consistent split, the verdict);
* :mod:`.ablate`: ``accord ablate`` (a model's declared ablation table, in the paper's layout);
* :mod:`.sweep`: ``accord sweep`` (optuna search on validation, parallel and resumable, final re-run on seeds);
* :mod:`.robustness`: ``accord robustness`` (scores of trained runs under increasing corruption).
"""
