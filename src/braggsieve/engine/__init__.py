"""braggsieve.engine layer: the numerical core, pure functions on arrays (no files).

* ``params``: IntegrationParams, CorrectionParams, ClipParams (shared by every command);
* ``csr``: ``build_binning`` -> ``RadialBinning`` (the CSR radial binning of a detector);
* ``corrections``: ``prepare_corrections`` -> ``Corrections``; ``preprocess`` -> ``Preprocessed``;
* ``integrate``: ``integrate``, ``sigma_clip`` -> ``RadialProfile``; ``bin_sums`` / ``merge_sums``;
* ``pick``, ``peaks``, ``densify``: picking, peak finding and densification on that background;
* ``backend``: the ``Engine`` protocol; ``cpu.CpuEngine`` (numba) and ``cuda.CudaEngine`` (CuPy) implement it,
  ``device.select_engine`` picks one;
* ``records``: the result records every backend returns.

See docs/engine.md.
"""
