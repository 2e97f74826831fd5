"""Evaluation of cellspot against truth, and the baselines it is compared with.

Serves the benchmarks (``benchmarks/``), the tests and the demo's truth check (rule
``truth_check``); the product package :mod:`cellspot` never imports it. Its extra dependencies
(py-ctcmetrics, laptrack) are the ``bench`` extra: ``pip install -e .[bench]``.

* :mod:`.metrics` - spot F1 with one-to-one matching, instance AP at an IoU;
* :mod:`.ctc_eval` - Cell Tracking Challenge ground truth and TRA/DET;
* :mod:`.baselines` - Cellpose's 3D stitching, laptrack linking;
* :mod:`.corrupt` - per-slice 2D instances with segmentation errors, from 3D truth;
* :mod:`.truth_tables` - report tables built from a simulation's truth;
* :mod:`.truth_check` - a simulated movie's workflow run against its truth;
* :mod:`.models` - network variants for quick trainings.
"""
