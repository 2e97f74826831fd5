import numpy as np

from cellspot_bench.metrics import average_precision, match_instances, spot_f1


def test_spot_f1_one_to_one_within_distance():
    truth = np.array([[0, 0], [10, 10], [20, 20]])
    pred = np.array([[0.5, 0.5], [0.6, 0.4], [10, 12.5], [40, 40]])
    m = spot_f1(truth, pred, max_distance=3)
    assert (m.tp, m.fp, m.fn) == (2, 2, 1)  # two predictions near one spot count once
    assert np.isclose(m.f1, 4 / 7)


def test_spot_f1_with_empty_sets():
    assert spot_f1(np.zeros((0, 2)), np.zeros((0, 2))).f1 == 1.0
    assert spot_f1(np.zeros((0, 2)), np.ones((3, 2))).fp == 3
    assert spot_f1([], np.ones((3, 3))).precision == 0.0
    assert spot_f1(np.ones((2, 3)), []).fn == 2


def test_instance_matching_at_iou_thresholds():
    truth = np.zeros((10, 10), int)
    truth[:5, :5] = 1
    truth[6:, 6:] = 2
    pred = np.zeros_like(truth)
    pred[:5, :4] = 7   # IoU 0.8 with object 1
    pred[6:, 8:] = 9   # IoU 0.5 with object 2
    assert match_instances(truth, pred, 0.5).tp == 2
    assert match_instances(truth, pred, 0.75).tp == 1
    assert average_precision(truth, pred, 0.75) == 1 / 3
