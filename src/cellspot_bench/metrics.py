"""Accuracy metrics used across stages: spot detection F1 and instance-segmentation AP.

Both match one-to-one with the Hungarian algorithm, as the field's benchmarks do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree


@dataclass(frozen=True)
class MatchResult:
    """Counts of a one-to-one matching and the scores derived from them."""

    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        d = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / d if d else 1.0

    def as_dict(self) -> dict:
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "precision": self.precision,
                "recall": self.recall, "f1": self.f1}


def match_points(truth: np.ndarray, pred: np.ndarray, max_distance: float = 3.0,
                 scale: tuple[float, ...] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matching of two point sets within ``max_distance`` (Hungarian, minimal total
    distance).

    Parameters
    ----------
    truth, pred : (N, D) and (M, D) arrays
        Point coordinates (pixels).
    max_distance : float
        Largest distance of a match, in the units of ``coords * scale``.
    scale : tuple of float, optional
        Per-axis factor applied before measuring distances (e.g. anisotropic voxels).

    Returns
    -------
    truth_idx, pred_idx : arrays of int
        Indices of matched pairs.
    """
    if len(truth) == 0 or len(pred) == 0:
        return np.zeros(0, int), np.zeros(0, int)
    truth = np.asarray(truth, float).reshape(len(truth), -1)
    pred = np.asarray(pred, float).reshape(len(pred), -1)
    if scale is not None:
        truth, pred = truth * np.asarray(scale), pred * np.asarray(scale)
    # Sparse candidate pairs keep this fast for tens of thousands of spots.
    pairs = cKDTree(truth).sparse_distance_matrix(cKDTree(pred), max_distance,
                                                  output_type="coo_matrix")
    if pairs.nnz == 0:
        return np.zeros(0, int), np.zeros(0, int)
    rows, cols = np.unique(pairs.row), np.unique(pairs.col)
    big = max_distance * 10 + 1.0
    cost = np.full((len(rows), len(cols)), big)
    cost[np.searchsorted(rows, pairs.row), np.searchsorted(cols, pairs.col)] = pairs.data
    r, c = linear_sum_assignment(cost)
    keep = cost[r, c] <= max_distance
    return rows[r[keep]], cols[c[keep]]


def spot_f1(truth: np.ndarray, pred: np.ndarray, max_distance: float = 3.0,
            scale: tuple[float, ...] | None = None) -> MatchResult:
    """Spot detection counts at ``max_distance`` with one-to-one matching."""
    ti, _ = match_points(truth, pred, max_distance, scale)
    return MatchResult(tp=len(ti), fp=len(pred) - len(ti), fn=len(truth) - len(ti))


def iou_matrix(truth: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IoU between every truth and predicted instance of two label images of the same shape.

    Returns
    -------
    iou : (n_truth, n_pred) array
    truth_ids, pred_ids : arrays of the label values (0, the background, excluded)
    """
    truth, pred = np.asarray(truth).ravel(), np.asarray(pred).ravel()
    t_ids, t_inv = np.unique(truth, return_inverse=True)
    p_ids, p_inv = np.unique(pred, return_inverse=True)
    overlap = np.zeros((len(t_ids), len(p_ids)), np.int64)
    np.add.at(overlap, (t_inv, p_inv), 1)
    t_area, p_area = overlap.sum(1, keepdims=True), overlap.sum(0, keepdims=True)
    union = t_area + p_area - overlap
    iou = np.where(union > 0, overlap / np.maximum(union, 1), 0.0)
    t_keep, p_keep = t_ids != 0, p_ids != 0
    return iou[np.ix_(t_keep, p_keep)], t_ids[t_keep], p_ids[p_keep]


def matched_pairs(truth: np.ndarray, pred: np.ndarray, iou_threshold: float = 0.5):
    """One-to-one (Hungarian on IoU) pairs of truth and predicted ids with IoU >= threshold.

    Returns ``(truth_ids, pred_ids, ious, n_truth, n_pred)``.
    """
    iou, t_ids, p_ids = iou_matrix(truth, pred)
    if iou.size == 0:
        return np.zeros(0, int), np.zeros(0, int), np.zeros(0), len(t_ids), len(p_ids)
    r, c = linear_sum_assignment(-iou)
    keep = iou[r, c] >= iou_threshold
    return t_ids[r[keep]], p_ids[c[keep]], iou[r, c][keep], len(t_ids), len(p_ids)


def match_instances(truth: np.ndarray, pred: np.ndarray, iou_threshold: float = 0.5) -> MatchResult:
    """Instance matching counts at an IoU threshold (one-to-one, Hungarian on IoU)."""
    t_ids, _, _, n_truth, n_pred = matched_pairs(truth, pred, iou_threshold)
    return MatchResult(tp=len(t_ids), fp=n_pred - len(t_ids), fn=n_truth - len(t_ids))


def average_precision(truth: np.ndarray, pred: np.ndarray, iou_threshold: float = 0.5) -> float:
    """AP at one IoU threshold as in the cell segmentation literature: TP / (TP + FP + FN).

    This is the StarDist/Cellpose definition for label images without scores; for scored
    instance lists use COCO mAP (pycocotools).
    """
    m = match_instances(truth, pred, iou_threshold)
    d = m.tp + m.fp + m.fn
    return m.tp / d if d else 1.0


def average_precision_at(truth: np.ndarray, pred: np.ndarray,
                         thresholds=(0.5, 0.75)) -> dict[float, float]:
    """AP (TP / (TP + FP + FN)) at several IoU thresholds, computing the IoU matrix once.

    Works for 2D and 3D label images alike (e.g. 3D AP@0.5 and AP@0.75 of stitched objects).
    """
    iou, t_ids, p_ids = iou_matrix(truth, pred)
    out = {}
    if iou.size:
        r, c = linear_sum_assignment(-iou)
        matched = iou[r, c]
    else:
        matched = np.zeros(0)
    for th in thresholds:
        tp = int(np.sum(matched >= th))
        d = len(t_ids) + len(p_ids) - tp
        out[float(th)] = tp / d if d else 1.0
    return out
