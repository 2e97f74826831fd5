"""COCO datasets from label volumes, and the classical/annotation-free spot tools (no mmcv)."""

import json

import numpy as np
import pytest
from pycocotools.coco import COCO

from cellspot.segment import coco, spots_classic, training_data
from cellspot_bench.metrics import match_points, spot_f1


def _movie(t=3, z=4, y=40, x=48, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.normal(100, 5, (t, 2, z, y, x)).astype(np.float32)
    nuc = np.zeros((t, z, y, x), np.uint16)
    cell = np.zeros_like(nuc)
    yy, xx = np.mgrid[:y, :x]
    for k, (cy, cx) in enumerate([(12, 12), (26, 34)]):
        cell[:, 1:, (yy - cy) ** 2 + (xx - cx) ** 2 < 64] = k + 1
        nuc[:, 1:, (yy - cy) ** 2 + (xx - cx) ** 2 < 16] = k + 1
    image[:, 0] += 50 * (nuc > 0)
    image[:, 1] += 30 * (cell > 0)
    return image, nuc, cell


def test_coco_from_volumes_is_valid_for_pycocotools(tmp_path):
    image, nuc, cell = _movie()
    paths = coco.coco_from_volumes(image, {"nucleus": nuc, "cell": cell}, tmp_path / "c",
                                   keep_empty=1.0, val_fraction=0.34, seed=1)
    train, val = COCO(str(paths["train"])), COCO(str(paths["val"]))
    # 3 timepoints -> 1 validation group, 2 training groups, 4 slices each (empty z=0 kept)
    assert len(val.imgs) == 4 and len(train.imgs) == 8
    assert {c["name"] for c in train.cats.values()} == {"nucleus", "cell"}
    groups_train = {im["group"] for im in train.imgs.values()}
    groups_val = {im["group"] for im in val.imgs.values()}
    assert not groups_train & groups_val
    # every non-empty slice has 2 nuclei and 2 cells; masks decode to the label areas
    for c in (train, val):
        assert coco.check_coco(paths["train"])["annotations"] == len(train.anns)
        for ann in c.anns.values():
            m = c.annToMask(ann)
            assert m.sum() == ann["area"] > 0
            x, y, w, h = ann["bbox"]
            ys, xs = np.nonzero(m)
            assert (x, y, w, h) == (xs.min(), ys.min(), np.ptp(xs) + 1, np.ptp(ys) + 1)
    # the image file is the normalised slice, channels last
    im = next(iter(train.imgs.values()))
    arr = np.load(paths["train"].parent / im["file_name"])
    assert arr.shape == (40, 48, 2) and arr.dtype == np.float32
    # COCO evaluation runs on it (ground truth against itself: perfect segm AP)
    from pycocotools.cocoeval import COCOeval
    dets = [dict(image_id=a["image_id"], category_id=a["category_id"],
                 segmentation=a["segmentation"], score=1.0) for a in train.anns.values()]
    ev = COCOeval(train, train.loadRes(dets), "segm")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)


def test_spot_masks_separate_touching_spots():
    lab = coco.spot_masks(np.array([[10.0, 10.0], [10.0, 13.0], [30.2, 5.7]]), (40, 20), 2.0)
    assert set(np.unique(lab)) == {0, 1, 2, 3}
    assert 9 <= (lab == 3).sum() <= 14  # a disc of radius 2 px
    # the pixel between the first two goes to the nearer centre
    assert lab[10, 11] == 1 and lab[10, 12] == 2


def test_bad_coco_input_errors(tmp_path):
    with pytest.raises(coco.CocoError, match="no such COCO file"):
        coco.load_coco(tmp_path / "missing.json")
    (tmp_path / "x.json").write_text(json.dumps({"images": []}))
    with pytest.raises(coco.CocoError, match="not a COCO instances file"):
        coco.load_coco(tmp_path / "x.json")
    empty = np.zeros((1, 1, 2, 8, 8))
    with pytest.raises(coco.CocoError, match="no slices"):
        coco.coco_from_volumes(empty, {"nucleus": np.zeros((1, 2, 8, 8), int)}, tmp_path / "e",
                               keep_empty=0.0)
    assert not (tmp_path / "e").exists()  # atomic: nothing half-written


def test_import_existing_coco(tmp_path):
    image, nuc, cell = _movie(t=2)
    p = coco.coco_from_volumes(image, {"nucleus": nuc, "cell": cell}, tmp_path / "a")
    out = coco.import_coco(p["train"], tmp_path / "b", val_fraction=0.0)
    a, b = coco.load_coco(p["train"]), coco.load_coco(out["train"])
    assert len(a.anns) == len(b.anns) and len(a.imgs) == len(b.imgs)


def _spot_image(n=40, shape=(96, 128), sigma=1.3, amp=80.0, seed=0):
    rng = np.random.default_rng(seed)
    bg = 20 + rng.normal(0, 2.0, shape)
    img, pos = spots_classic.render_spot_image(bg, n, sigma, np.array([amp]), gain=0.0,
                                               min_separation=6, amplitude_scale=(1, 1),
                                               seed=seed)
    return img, pos


def test_log_otsu_detector_finds_rendered_spots():
    img, pos = _spot_image()
    det = spots_classic.detect_spots_log(img, 1.3)
    m = spot_f1(pos, det[["y", "x"]].to_numpy(), 3.0)
    assert m.f1 > 0.9
    # sub-pixel refinement is closer than the integer maxima
    raw = spots_classic.detect_spots_log(img, 1.3, refine=False)
    ti, pi = match_points(pos, det[["y", "x"]].to_numpy(), 3.0)
    tj, pj = match_points(pos, raw[["y", "x"]].to_numpy(), 3.0)
    err = np.hypot(*(pos[ti] - det[["y", "x"]].to_numpy()[pi]).T).mean()
    err_raw = np.hypot(*(pos[tj] - raw[["y", "x"]].to_numpy()[pj]).T).mean()
    assert err < err_raw
    # an empty (constant) image yields nothing
    assert spots_classic.detect_spots_log(np.zeros((32, 32)), 1.3).empty


def test_psf_sigma_and_spot_free_background():
    img, pos = _spot_image(sigma=1.6, seed=3)
    sigma, fits = spots_classic.estimate_psf_sigma([img], sigma0=1.5)
    assert sigma == pytest.approx(1.6, rel=0.1)
    assert fits["amp"].median() == pytest.approx(80, rel=0.2)
    bg = spots_classic.remove_spots(img, sigma)
    # no spot survives: the detector at the original image's threshold finds (almost) none
    thr = spots_classic.detect_spots_log(img, sigma)["threshold"].iloc[0]
    assert len(spots_classic.detect_spots_log(bg, sigma, threshold=thr)) <= 2
    assert abs(bg.mean() - 20) < 1.0


def test_rendered_spot_sizes_follow_the_measured_psfs():
    """Per-spot sigmas (drawn with their amplitudes) render spots of those sizes."""
    bg = np.full((128, 128), 10.0)
    img, pos = spots_classic.render_spot_image(bg, 30, np.array([1.0, 2.0]),
                                               np.array([100.0, 100.0]), gain=0.0,
                                               min_separation=14, amplitude_scale=(1, 1))
    _, fits = spots_classic.estimate_psf_sigma([img], sigma0=1.5, half=5)
    assert len(fits) >= 10
    # both sizes occur, and nothing in between
    assert (np.abs(fits["sigma"] - 1.0) < 0.1).sum() >= 3
    assert (np.abs(fits["sigma"] - 2.0) < 0.15).sum() >= 3
    assert np.all((np.abs(fits["sigma"] - 1.0) < 0.1) | (np.abs(fits["sigma"] - 2.0) < 0.15))


def test_annotation_free_spot_training_data(tmp_path):
    """A user with raw images only: PSF-rendered spots in their own background -> COCO."""
    from skimage.io import imsave

    img, _ = _spot_image(seed=5)
    f = tmp_path / "raw.tif"
    imsave(f, img.astype(np.float32))
    paths = training_data.build_training_coco(
        "spots", {"source": "psf_synthetic", "images": [str(f)], "n_copies": 3,
                  "val_fraction": 0.0}, tmp_path / "coco", ["rna"])
    c = coco.load_coco(paths["train"])
    assert len(c.imgs) == 3
    # density matches the raw image (40 spots, about as many detected)
    n = [len(c.getAnnIds(imgIds=i)) for i in c.imgs]
    assert all(30 <= k <= 45 for k in n)
    # the labels are where the rendered spots are: LoG on the rendered image finds them
    im = c.imgs[1]
    arr = np.load(paths["train"].parent / im["file_name"])[..., 0]
    centres = np.array([[a["bbox"][1] + a["bbox"][3] / 2, a["bbox"][0] + a["bbox"][2] / 2]
                        for a in c.loadAnns(c.getAnnIds(imgIds=1))])
    det = spots_classic.detect_spots_log(arr, 1.3)
    assert spot_f1(centres, det[["y", "x"]].to_numpy(), 3.0).f1 > 0.85
    # pseudo-labels: LoG detections as labels
    p2 = training_data.build_training_coco("spots", {"source": "pseudo_labels", "images": [str(f)],
                                            "val_fraction": 0.0}, tmp_path / "pl", ["rna"])
    assert 30 <= len(coco.load_coco(p2["train"]).anns) <= 45


def test_coco_from_simulation_moves_truth_by_drift(tmp_path):
    sim = pytest.importorskip("cellspot.simulate")
    movie = sim.simulate_movie(sim.SimulationConfig(n_timepoints=2, shape=(4, 64, 64),
                                                    n_cells=2), seed=2)
    p = coco.coco_from_simulation(movie, "spots", tmp_path / "s", ["rna"], val_fraction=0.0,
                                  keep_empty=1.0)
    c = coco.load_coco(p["train"])
    assert len(c.anns) > 0
    # spot masks sit on bright rna pixels of the raw (drifted) image
    on, off = [], []
    for im in c.imgs.values():
        arr = np.load(p["train"].parent / im["file_name"])[..., 0]
        m = np.zeros(arr.shape, bool)
        for a in c.loadAnns(c.getAnnIds(imgIds=im["id"])):
            m |= c.annToMask(a).astype(bool)
        if m.any():
            on.append(arr[m].mean())
            off.append(arr[~m].mean())
    assert np.mean(on) > np.mean(off) + 0.1


def test_simulated_training_data_by_role_with_renamed_channels(tmp_path):
    """A movie whose stains are not named nucleus/cytoplasm/rna still gets models trained:
    the simulated training movie is looked up by role, and preprocessed like the movie."""
    settings = {"source": "simulation", "seed": 3, "z_step": 4, "val_fraction": 0.0,
                "simulation": {"n_timepoints": 1, "shape": [8, 64, 64], "n_cells": 2}}
    names = ["nuclei_DAPI", "cytoplasm_stain", "RNA_spots"]
    with pytest.raises(Exception, match="nuclei_DAPI"):  # names alone cannot be looked up
        training_data.build_training_coco("cells", settings, tmp_path / "a", names)
    pre = {"rna": {"normalize": {"low": 1.0, "high": 99.99},
                   "filters": [{"kind": "tophat", "radius_um": 1.0}]}}
    p = training_data.build_training_coco("cells", settings, tmp_path / "b", names,
                                 roles=["nucleus", "cytoplasm", "rna"], preprocess=pre)
    c = coco.load_coco(p["train"])
    assert len(c.anns) > 0
    arr = np.load(p["train"].parent / c.imgs[1]["file_name"])
    assert arr.shape[-1] == 3
    # the rna channel went through the top-hat, as after preprocessing: its background is
    # darker than with the plain percentile normalisation
    q = training_data.build_training_coco("cells", settings, tmp_path / "c", names,
                                 roles=["nucleus", "cytoplasm", "rna"])
    plain = np.load(q["train"].parent / coco.load_coco(q["train"]).imgs[1]["file_name"])
    assert np.median(arr[..., 2]) < 0.5 * np.median(plain[..., 2])
    np.testing.assert_allclose(np.median(arr[..., 0]), np.median(plain[..., 0]), atol=0.05)


def test_training_data_without_the_stains_the_movie_lacks(tmp_path):
    """A movie with a nucleus stain only (channels.cytoplasm/rna: null) trains on simulated
    slices with those channels zero and without cell outlines (not visible there)."""
    img = np.random.default_rng(0).random((2, 3, 4, 8, 8)).astype(np.float32)
    labels = {"nucleus": np.ones((2, 4, 8, 8), int), "cell": np.ones((2, 4, 8, 8), int)}
    out, kept = coco.without_stains(img, labels, ["nucleus", "cytoplasm", "rna"],
                                    ["cytoplasm", "rna"], axis=1)
    assert list(kept) == ["nucleus"] and not out[:, 1:].any()
    assert np.array_equal(out[:, 0], img[:, 0]) and img[:, 1:].all()   # the input untouched
    _, kept = coco.without_stains(img, labels, ["nucleus", "cytoplasm", "rna"], ["rna"], 1)
    assert list(kept) == ["nucleus", "cell"]

    settings = {"source": "simulation", "seed": 3, "z_step": 4, "val_fraction": 0.0,
                "simulation": {"n_timepoints": 1, "shape": [8, 64, 64], "n_cells": 2}}
    p = training_data.build_training_coco("cells", settings, tmp_path / "a", ["DAPI", None, None],
                                 roles=["nucleus", "cytoplasm", "rna"])
    c = coco.load_coco(p["train"])
    names = {cat["id"]: cat["name"] for cat in c.dataset["categories"]}
    assert set(names.values()) == {"nucleus", "cell"}     # the model's classes stay
    assert {names[a["category_id"]] for a in c.anns.values()} == {"nucleus"}
    arr = np.load(p["train"].parent / c.imgs[1]["file_name"])
    assert arr[..., 0].any() and not arr[..., 1:].any()
