"""Statistics, figures and the HTML report of a batch (RNA per cell, localisation, motion).

One concern per module:

- :mod:`.stats`   pure statistics on trajectories (speed, MSD, D, persistence, permutation test)
- :mod:`.tables`  per-cell, per-track and per-batch tables from the stage tables
- :mod:`.coloc`   RNA localisation in cells vs random placement (uses the label images)
- :mod:`.plots`   matplotlib figures
- :mod:`.html`    the self-contained HTML page
- :mod:`.build`   reading inputs, computing everything, writing outputs (what the rules call)
- :mod:`.truth`   stage input tables from simulated ground truth (tests, demos)

Command line: ``python -m cellspot.report batch results/<batch>``.
"""

from cellspot.report.build import (
                                   ReportConfig,
                                   ReportInputs,
                                   ReportOutputs,
                                   compute,
                                   make_report,
                                   summarise_batches,
)

__all__ = ["ReportConfig", "ReportInputs", "ReportOutputs", "compute", "make_report",
           "summarise_batches"]
