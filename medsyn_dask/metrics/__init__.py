"""The numbers of METHOD.md, one module each.

- ``scores``: fidelity, privacy, precision_privacy, the copy / real / non-real sets;
- ``std``: the feature STD (variety of features, and the mode-collapse margin);
- ``fid``: the Fréchet distance as a small plan (covariance, Gram or none-with-reason);
  ``fid_linalg``: its NumPy maths (the real side decomposed once, two GEMMs and one
  symmetric eigenvalue solve per group);
- ``variety/``: mean images, their lossless sizes and the variety score;
- ``multiscale``: MM-FID / MM-STD over models x resolutions.
"""
