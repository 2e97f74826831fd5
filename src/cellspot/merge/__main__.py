"""``python -m cellspot.merge``: see :func:`cellspot.merge.run.main`."""

from .run import main

main()
