"""``python -m medsyn_dask.phantoms OUTDIR``: write a demo set."""

from . import main

raise SystemExit(main())
