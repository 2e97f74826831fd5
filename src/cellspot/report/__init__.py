"""Statistics, figures and the HTML report of a batch (RNA per cell, localisation, motion).

One concern per module:

- :mod:`.stats`   pure statistics on trajectories (speed, MSD, D, persistence, permutation test)
- :mod:`.tables`  per-cell, per-track and per-batch tables from the stage tables
- :mod:`.coloc`   RNA localisation in cells vs random placement (uses the label images)
- :mod:`.plots`   matplotlib figures
- :mod:`.html`    the self-contained HTML page
- :mod:`.trust`   notes on when the numbers should not be trusted
- :mod:`.settings` the ``report:`` settings
- :mod:`.build`   reading inputs, computing everything, writing outputs (what the rules call)

Command line: ``python -m cellspot.report batch results/<batch>``.
"""

__all__ = [
    "ReportConfig",
    "ReportInputs",
    "ReportOutputs",
    "compute",
    "make_report",
    "summarise_batches",
]


def __getattr__(name):
    # Lazy: the settings (cellspot.config) are read without importing matplotlib.
    if name in __all__:
        from cellspot.report import build

        return getattr(build, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
