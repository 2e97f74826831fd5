"""3D label merging: per-slice 2D instances -> 3D cells, nuclei, compartments and RNA spots.

The segmentation models see 2D z-slices. This stage

* stitches the 2D instances of adjacent slices into 3D objects (:mod:`.stitch`);
* gives each cell one nucleus (:mod:`.split_cells`), relates nuclei to cells and builds the
  semantic map 0 background, 1 cytoplasm, 2 nucleus (:mod:`.compartments`);
* merges per-slice RNA spot detections into 3D spots with a sub-pixel position, an integrated
  intensity, RNA molecules (:mod:`.molecules`), the cell and compartment they lie in and their
  distance to the nucleus surface (:mod:`.spots`);
* measures every object (:mod:`.measure`).

:func:`merge_timepoint` does one timepoint from arrays; :func:`run_merge` is the file-level
driver of the Snakemake rule ``merge`` (also ``python -m cellspot.merge``). All other functions
are pure functions of arrays and tables.
"""

from .compartments import assign_nuclei, grow_cells, semantic_map
from .measure import object_table
from .run import LABEL_NAMES, TABLE_NAMES, SegmentationBlocks, main, run_merge
from .settings import COMPARTMENTS, SEMANTIC_PROPERTIES, SPOT_COLUMNS, MergeSettings, SpotSettings
from .spots import count_molecules, link_spot_detections, merge_spots, spot_labels
from .stitch import stitch_slices
from .timepoint import MergedTimepoint, merge_timepoint

__all__ = [
    "COMPARTMENTS",
    "LABEL_NAMES",
    "SEMANTIC_PROPERTIES",
    "SPOT_COLUMNS",
    "TABLE_NAMES",
    "MergeSettings",
    "MergedTimepoint",
    "SegmentationBlocks",
    "SpotSettings",
    "assign_nuclei",
    "grow_cells",
    "count_molecules",
    "link_spot_detections",
    "main",
    "merge_spots",
    "merge_timepoint",
    "object_table",
    "run_merge",
    "semantic_map",
    "spot_labels",
    "stitch_slices",
]
