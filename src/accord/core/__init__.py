"""The core floor: what every other part of Accord stands on, importing nothing of Accord itself.

``types`` (Batch, ModelOutput, the modalities), ``errors`` (one-line user errors), ``io`` (atomic writes),
``registry`` (name -> factory), ``hooks`` (the trainer-hook protocol and its registry), ``rundir`` (the run
directory's layout and readers), ``extras`` (optional packages). See docs/architecture.md.
"""
