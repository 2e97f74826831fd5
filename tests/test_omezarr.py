import json
import os

import numpy as np
import pytest

from cellspot.omezarr import (
    ImageMeta,
    OmeZarrError,
    assemble_view,
    atomic_output,
    create_image,
    create_labels,
    default_chunks,
    open_array,
    read_meta,
    write_labels,
)

META = ImageMeta(("nucleus", "cytoplasm", "rna"), (0.5, 0.25, 0.25), 30.0, "b1")


def test_atomic_output_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.ome.zarr"
    with pytest.raises(RuntimeError):
        with atomic_output(target) as tmp:
            create_image(tmp, (1, 3, 2, 8, 8), "uint16", META)
            raise RuntimeError("killed")
    assert os.listdir(tmp_path) == []


def test_atomic_output_replaces_existing(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")
    with atomic_output(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and os.listdir(tmp_path) == ["f.txt"]


def test_image_metadata_is_ngff_04_and_readable_by_ome_zarr(tmp_path):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    path = tmp_path / "img.ome.zarr"
    arr = create_image(path, (2, 3, 4, 16, 16), "uint16", META)
    data = np.random.default_rng(0).integers(0, 1000, (2, 3, 4, 16, 16)).astype("uint16")
    arr[...] = data
    attrs = json.loads((path / ".zattrs").read_text())
    ms = attrs["multiscales"][0]
    assert ms["version"] == "0.4" and [a["name"] for a in ms["axes"]] == list("tczyx")
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == [30.0, 1, 0.5, 0.25, 0.25]
    assert json.loads((path / "0" / ".zarray").read_text())["dimension_separator"] == "/"
    node = list(Reader(parse_url(str(path)))())[0]
    assert np.array_equal(np.asarray(node.data[0]), data)
    assert node.metadata["channel_names"] == ["nucleus", "cytoplasm", "rna"]
    assert read_meta(path) == META


def test_labels_and_view_open_in_ome_zarr(tmp_path):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    img = tmp_path / "pre.ome.zarr"
    create_image(img, (1, 3, 2, 8, 8), "float32", META)[...] = 1.0
    labels = np.zeros((1, 2, 8, 8), np.uint32)
    labels[0, :, 2:5, 2:5] = 7
    write_labels(tmp_path / "labels" / "cells.zarr", labels, META, "cells")
    view = tmp_path / "b1.ome.zarr"
    assemble_view(img, {"cells": tmp_path / "labels" / "cells.zarr"}, view)
    nodes = list(Reader(parse_url(str(view)))())
    assert any(n.metadata.get("name") == "cells" for n in nodes)
    label_node = [n for n in nodes if n.metadata.get("name") == "cells"][0]
    assert np.array_equal(np.asarray(label_node.data[0]), labels)
    assert os.path.islink(view / "0")  # nothing copied


def test_create_checks_shapes(tmp_path):
    with pytest.raises(OmeZarrError, match="5D"):
        create_image(tmp_path / "a", (3, 4, 5), "uint8", META)
    with pytest.raises(OmeZarrError, match="channel names"):
        create_image(tmp_path / "b", (1, 2, 1, 4, 4), "uint8", META)
    with pytest.raises(OmeZarrError, match="4D"):
        create_labels(tmp_path / "c", (1, 4, 4), META, "x")


def test_missing_store_and_channel_errors(tmp_path):
    with pytest.raises(OmeZarrError, match="no such"):
        open_array(tmp_path / "nope.ome.zarr")
    with pytest.raises(OmeZarrError, match="'dapi' not found"):
        META.channel_index("dapi")
    assert META.channel_index("rna") == 2 and META.channel_index(1) == 1


def test_default_chunks_one_timepoint_block_of_z():
    assert default_chunks((10, 3, 100, 512, 512), 2, target_mb=8) == (1, 1, 16, 512, 512)
    assert default_chunks((1, 1, 4, 16, 16), 2) == (1, 1, 4, 16, 16)
