"""Cutting a 1D profile (an object's section area, a spot's brightness along z) at its valleys."""

from __future__ import annotations

import numpy as np


def split_profile(values: np.ndarray, ratio: float, links: np.ndarray | None = None,
                   concave: bool = False) -> list[int]:
    """Cut points of a profile along z at minima below ``ratio`` x both neighbouring maxima.

    Returns indices ``i`` where a new part starts. With ``concave`` (section areas of convex
    objects), the minimum joins the side that keeps both parts' profiles concave at the cut;
    otherwise (or on a tie) the side it is linked to more strongly (``links[k]`` between
    members ``k`` and ``k + 1``, e.g. IoU), else the side whose value is closer to it.
    """
    values = np.asarray(values, float)
    cuts = []
    start = 0
    n = len(values)
    i = 1
    while i < n - 1:
        v = values[i]
        if (v < values[i - 1] and v <= values[i + 1]
                and v < ratio * min(values[start:i].max(), values[i + 1:].max())):
            bend = concavity_violation(values, start, i)
            if concave and bend[0] != bend[1]:
                to_left = bend[0] < bend[1]
            elif links is not None:
                to_left = links[i - 1] >= links[i]
            else:
                to_left = abs(v - values[i - 1]) <= abs(v - values[i + 1])
            cut = i + 1 if to_left else i
            cuts.append(cut)
            start = cut
            i = cut + 1
            continue
        i += 1
    return cuts


def concavity_violation(values: np.ndarray, start: int, i: int) -> tuple[float, float]:
    """How much cutting after / before the minimum ``i`` makes the parts' ends convex.

    The section area of a convex object is a concave function of z; a positive second
    difference at a part's end (its last or first three values) is a violation.
    """
    def viol(a, b, c):
        return max(0.0, a - 2 * b + c)

    n = len(values)
    v = values
    left = 0.0  # minimum with the left part: left ends ... i-2, i-1, i; right starts i+1..
    if i - 2 >= start:
        left += viol(v[i - 2], v[i - 1], v[i])
    if i + 3 < n:
        left += viol(v[i + 1], v[i + 2], v[i + 3])
    right = 0.0  # minimum with the right part
    if i - 3 >= start:
        right += viol(v[i - 3], v[i - 2], v[i - 1])
    if i + 2 < n:
        right += viol(v[i], v[i + 1], v[i + 2])
    return left, right
