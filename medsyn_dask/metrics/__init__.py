"""The numbers of METHOD.md, one module each: ``scores`` (fidelity, privacy, sets), ``std``
(feature STD), ``fid`` (Fréchet distance), ``variety`` (mean-image size and score) and
``multiscale`` (MM-FID / MM-STD)."""
