"""Data pipeline: file formats, data-set layout and doctor, normalisation, sampling, augmentation.

Submodules: ``io`` (read/write), ``dataset`` (discover/load cases), ``doctor`` (validation report),
``normalization``, ``sampling``, ``augment``, ``synthetic``, ``loader``.  See ``docs/data.md``.
"""
