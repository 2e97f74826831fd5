"""Cell Tracking Challenge evaluation: ground-truth folders and TRA/DET by py-ctcmetrics.

TRA and DET are computed by py-ctcmetrics (``ctc_metrics``), the challenge's reference
measures re-implemented in Python; the result folders are those of
:func:`cellspot.ctc.write_ctc_result`.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile

from cellspot.ctc import CTCError, frame_digits, lbep_lines, mask_dtype, read_lbep
from cellspot.omezarr import atomic_output

log = logging.getLogger(__name__)


def write_ctc_ground_truth(outdir: str | os.PathLike, masks: np.ndarray,
                           lineage: pd.DataFrame) -> Path:
    """Write a CTC ground-truth folder ``outdir/TRA`` from instance labels and a lineage table.

    Parameters
    ----------
    masks : ndarray (T, ...) of int
        Labels whose ids are the lineage's ``cell_id`` (persistent over time).
    lineage : DataFrame
        Columns ``cell_id, t_start, t_end, parent_id`` (0 = no parent), i.e. ``man_track.txt``.
    """
    lbep = lineage.rename(columns={"cell_id": "label", "t_start": "begin", "t_end": "end",
                                   "parent_id": "parent"})
    digits = frame_digits(len(masks))
    dtype = mask_dtype(int(lbep["label"].max()) if len(lbep) else 0)
    with atomic_output(outdir) as tmp:
        (tmp / "TRA").mkdir(parents=True)
        for t, m in enumerate(masks):
            tifffile.imwrite(tmp / "TRA" / f"man_track{t:0{digits}d}.tif",
                             np.asarray(m).astype(dtype), compression="zlib")
        (tmp / "TRA" / "man_track.txt").write_text(lbep_lines(lbep))
    return Path(outdir)


def evaluate_ctc(res_dir: str | os.PathLike, gt_dir: str | os.PathLike,
                 metrics: tuple[str, ...] = ("DET", "TRA")) -> dict:
    """TRA, DET (and other py-ctcmetrics metrics) of a CTC result folder against ground truth.

    Parameters
    ----------
    res_dir : path-like
        Folder with ``res_track.txt`` and ``mask###.tif``.
    gt_dir : path-like
        Folder holding ``TRA/man_track.txt`` and ``TRA/man_track###.tif``.

    Returns
    -------
    dict
        Metric values (``TRA``, ``DET``, ``AOGM`` and its parts ``AOGM_NS/FN/FP/ED/EA/EC``,
        ``Valid``). An empty result scores 0 rather than failing.
    """
    from ctc_metrics.scripts.evaluate import calculate_metrics, load_data

    res_dir, gt_dir = Path(res_dir), Path(gt_dir)
    for p in (res_dir / "res_track.txt", gt_dir / "TRA" / "man_track.txt"):
        if not p.exists():
            raise CTCError(f"{p}: missing")
    if len(read_lbep(res_dir / "res_track.txt")) == 0:
        log.warning("%s: empty tracking result; TRA and DET are 0", res_dir)
        return {m: 0.0 for m in metrics} | {"Valid": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        comp, ref, traj, segm, _, is_valid = load_data(str(res_dir), str(gt_dir), True, False,
                                                       threads=1)
        res = calculate_metrics(comp, ref, traj, segm, list(metrics) + ["Valid"], is_valid)
    return {k: (float(v) if v is not None else None) for k, v in res.items()}
