"""Segmentation of 2D slices with MMDetection Mask R-CNN: cells/nuclei and RNA spots.

* :mod:`.settings` - the ``segment:`` settings (models, training data, training, inference);
* :mod:`.coco`, :mod:`.spots_classic` - COCO training sets (simulations, labels, raw images,
  annotation-free spots) and the classical spot detector they use;
* :mod:`.models` - MMDetection configs and the microscopy transforms they register;
* :mod:`.starter` - the starter models shipped in the package (``checkpoint: builtin``);
* :mod:`.train`, :mod:`.infer` - training (resume, time limit) and inference per block of
  timepoints (tiling, test-time augmentation);
* :mod:`.store` - the block store's layout and reader (no torch: merge reads it).

Importing this package imports nothing heavy: torch and MMDetection come with :mod:`.models`,
:mod:`.train` and :mod:`.infer` only.
"""
