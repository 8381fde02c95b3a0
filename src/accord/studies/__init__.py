"""The studies floor, above the trainer: benchmarks, ablations, sweeps, robustness and peer comparisons, each a
caller of one primitive that trains named configs over seeds on a cached dataset and returns rows."""
