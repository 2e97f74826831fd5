"""One cell per nucleus: touching daughters split, nucleus-less fragments joined."""

import numpy as np

from cellspot import merge
from cellspot.merge.split_cells import absorb_anucleate_fragments, split_multinucleate
from cellspot.omezarr import ImageMeta

VS = (0.5, 0.25, 0.25)


def _daughters():
    """Two touching daughter cells segmented as one (label 1) with a fragment (label 2), and a
    lone cell (label 3); nuclei 1, 2 inside the pair, 3 in the lone cell."""
    cells = np.zeros((6, 40, 80), np.uint32)
    nuclei = np.zeros_like(cells)
    cells[1:5, 10:30, 5:45] = 1
    cells[1:5, 10:30, 45:50] = 2          # a nucleus-less sliver of the right daughter
    cells[1:5, 10:30, 60:75] = 3
    nuclei[2:4, 16:24, 12:20] = 1
    nuclei[2:4, 16:24, 35:43] = 2
    nuclei[2:4, 16:24, 64:70] = 3
    return cells, nuclei


def test_pair_with_fragment_becomes_two_daughters():
    cells, nuclei = _daughters()
    parents = merge.assign_nuclei(cells, nuclei)
    joined, n = absorb_anucleate_fragments(cells, parents)
    assert n == 1 and not (joined == 2).any() and (joined[1:5, 10:30, 45:50] == 1).all()
    split, n = split_multinucleate(joined, nuclei, parents, VS)
    assert n == 1
    left, right = split[3, 20, 10], split[3, 20, 48]
    assert left == 1 and right not in (0, 1, 3)
    # the cut lies halfway between the nuclei centres (x 15.5 and 38.5)
    row = split[3, 20, 5:50]
    cut = 5 + int(np.flatnonzero(row != left)[0])
    assert abs(cut - 27) <= 1
    assert (split[cells == 3] == 3).all()  # the lone cell is untouched


def test_whole_cell_without_nucleus_is_kept():
    cells, nuclei = _daughters()
    cells[1:5, 30:40, 5:50] = 4           # a full-size cell whose nucleus was missed
    parents = merge.assign_nuclei(cells, nuclei)
    joined, _ = absorb_anucleate_fragments(cells, parents)
    assert (joined == 4).sum() == (cells == 4).sum()


def test_merge_timepoint_splits_by_default_and_setting_turns_it_off():
    cells, nuclei = _daughters()
    meta = ImageMeta(channel_names=("nucleus", "cytoplasm", "rna"), voxel_size=VS)
    on = merge.merge_timepoint(cells, nuclei, None, None, meta, shape=cells.shape)
    assert len(np.unique(on.cells)) - 1 == 3 and (on.cell_table["n_nuclei"] == 1).all()
    off = merge.merge_timepoint(cells, nuclei, None, None, meta, shape=cells.shape,
                                settings=merge.MergeSettings(split_multinucleate=False))
    assert sorted(off.cell_table["n_nuclei"]) == [0, 1, 2]
