"""The starter models shipped in the package: present, small, loadable, accurate enough to be a
first answer, and a configuration that does not fit them stops with the setting's name."""

import json

import numpy as np
import pytest

from cellspot.errors import SegmentError
from cellspot.segment import starter


def test_builtin_names_files_in_the_package():
    for model in starter.MODELS:
        files = starter.starter_files(model)
        assert starter.STARTER_DIR in files["checkpoint"].parents
        assert starter.resolve_checkpoint(model, "builtin") == str(files["checkpoint"])
        assert starter.resolve_checkpoint(model, " Builtin ") == str(files["checkpoint"])
        assert starter.resolve_checkpoint(model, "my.pth") == "my.pth"
        assert starter.resolve_checkpoint(model, "") == ""
        # small enough for git, with a card that says what produced it
        assert files["checkpoint"].stat().st_size <= 25 * 2**20
        card = json.loads(files["card"].read_text())
        assert card["model"] == model and card["recipe"] == "recipes/starter_models.py"
        assert card["training"]["iterations"] > 0 and card["training_data"]["movies"] > 0
        assert 0 < card["benchmark"]["score"] <= 1


def test_unshipped_model_names_the_setting(tmp_path, monkeypatch):
    with pytest.raises(SegmentError, match=r"segment\.models\.nuclei\.checkpoint"):
        starter.starter_files("nuclei")
    monkeypatch.setattr(starter, "STARTER_DIR", tmp_path)
    with pytest.raises(SegmentError, match=r"segment\.models\.spots\.pretrained.*not ship"):
        starter.resolve_checkpoint("spots", "builtin", "pretrained")


def test_first_difference_names_the_key():
    a = {"backbone": {"depth": 18, "out": [0, 1]}, "neck": {"c": 64}}
    assert starter.first_difference(a, a) is None
    assert "model.backbone.depth (34 vs 18)" in starter.first_difference(
        {**a, "backbone": {"depth": 34, "out": [0, 1]}}, a)
    assert "model.neck.extra" in starter.first_difference({**a, "neck": {"c": 64, "extra": 1}}, a)


mmcv_ops = pytest.importorskip("mmcv.ops", reason="mmcv with compiled ops is not installed")


def test_configured_model_must_match_the_starter():
    from cellspot.segment.models import check_starter_matches, default_config_path

    for model in starter.MODELS:  # the default configs are the starter models' own
        check_starter_matches(model, default_config_path(model))
    with pytest.raises(SegmentError, match=r"segment\.models\.cells\.config.*backbone\.depth"):
        check_starter_matches("cells", default_config_path("cells"), depth=34)
    with pytest.raises(SegmentError, match=r"segment\.models\.spots\.checkpoint"):
        check_starter_matches("spots", default_config_path("cells"))


def test_pretrained_that_does_not_fit_names_the_setting():
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    from cellspot.segment.models import default_config_path, load_model_config
    from cellspot.segment.train import check_pretrained_fits

    register_all_modules()
    net = MODELS.build(load_model_config(default_config_path("cells")).model)
    check_pretrained_fits("cells", net, starter.starter_files("cells")["checkpoint"])
    with pytest.raises(SegmentError, match=r"segment\.models\.cells\.pretrained"):
        check_pretrained_fits("cells", net, starter.starter_files("spots")["checkpoint"])


def _workflow_inputs(movie, roles):
    """The movie's channels as the preprocess stage's defaults make them, (T, Z, Y, X, C)."""
    import yaml

    from cellspot.segment.coco import preprocessed_like_workflow
    from conftest import REPO

    pre = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["preprocess"]["channels"]
    img = np.asarray(movie.image)[:, [movie.meta.channel_index(r) for r in roles]]
    return np.moveaxis(preprocessed_like_workflow(img, roles, pre, movie.meta.voxel_size), 1, -1)


@pytest.mark.slow
def test_starter_models_segment_an_unseen_movie(small_movie):
    """Untrained by the user, on a movie of a seed the recipe never used: most cells and most
    in-focus spots of the middle slice are found (what the benchmarks measure in full)."""
    from cellspot.segment.coco import _shift_labels
    from cellspot.segment.infer import Segmenter
    from cellspot_bench.metrics import match_instances, spot_f1

    t, z = 1, 8
    shift = small_movie.drift.set_index("t").loc[t, ["dz", "dy", "dx"]].to_numpy(float)
    files = starter.starter_files("cells")
    seg = Segmenter(files["config"], files["checkpoint"], device="cpu", model="cells")
    stacks, _ = seg.segment_slices(_workflow_inputs(small_movie, ["nucleus", "cytoplasm",
                                                                  "rna"])[t, z:z + 1])
    truth = _shift_labels(np.asarray(small_movie.cells[t]), shift)[z]
    m = match_instances(truth, stacks["cell"][0], 0.5)
    assert m.tp >= 0.75 * (m.tp + m.fn) and m.fp <= 1, m

    files = starter.starter_files("spots")
    seg = Segmenter(files["config"], files["checkpoint"], device="cpu", model="spots")
    x = _workflow_inputs(small_movie, ["rna"])[t]
    s = small_movie.spots[small_movie.spots["t"] == t]
    zz = s["z"] + shift[0]
    sel = np.abs(zz - z) <= 0.5  # in focus in this slice
    truth = np.stack([s["y"][sel] + shift[1], s["x"][sel] + shift[2]], 1)
    table = seg.segment_slices(x[z:z + 1])[1][0]
    m = spot_f1(truth, table[["y", "x"]].to_numpy(), 3.0)
    assert m.recall >= 0.8, m  # spots a slice away may be found too (merge links them in z)


def test_models_trained_before_the_segment_package_still_load():
    """Configs and checkpoints written before 2026-12-02 import cellspot.segment_models."""
    from mmengine.utils import import_modules_from_strings

    import cellspot.segment.models as models

    (old,) = import_modules_from_strings(["cellspot.segment_models"])
    assert old.LoadMicroscopyImage is models.LoadMicroscopyImage
    assert old.SemanticFromInstances is models.SemanticFromInstances
