"""``python -m cellspot.preprocess``: see :func:`cellspot.preprocess.run.main`."""

from .run import main

raise SystemExit(main())
