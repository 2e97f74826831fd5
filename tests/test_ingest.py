import hashlib
import json
import os
import tracemalloc

import numpy as np
import pytest
import tifffile

from cellspot.cli import main as cli_main
from cellspot.ingest import ingest_movie
from cellspot.omezarr import ImageMeta, open_array, read_meta
from cellspot.simulate import ome_metadata
from cellspot.tiffio import InputError

RNG = np.random.default_rng(0)
FULL = RNG.integers(0, 4000, (3, 2, 5, 24, 20)).astype(np.uint16)  # T C Z Y X
# Each supported layout, as the sub-array of FULL it holds.
LAYOUTS = {
    "TCZYX": FULL,
    "TZYX": FULL[:, 0],
    "CZYX": FULL[0],
    "ZYX": FULL[0, 0],
    "CYX": FULL[0, :, 0],
    "YX": FULL[0, 0, 0],
}


def as_tczyx(data, axes):
    out = data
    for i, ax in enumerate("TCZYX"):
        if ax not in axes:
            out = np.expand_dims(out, i)
    return out


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_simulated_ome_tiff_round_trip(small_movie_files, small_movie, tmp_path):
    src = small_movie_files / "movie.ome.tif"
    before = (sha256(src), os.stat(src).st_mtime_ns)
    dst = tmp_path / "raw.ome.zarr"
    summary = ingest_movie(src, dst, name="b1")
    assert (sha256(src), os.stat(src).st_mtime_ns) == before  # raw data untouched
    arr = open_array(dst)
    assert np.array_equal(arr[...], small_movie.image)
    assert arr.chunks[:2] == (1, 1) and arr.chunks[3:] == (96, 96)
    assert arr.compressors  # compressed
    meta = read_meta(dst)
    assert meta == ImageMeta(("nucleus", "cytoplasm", "rna"), (0.5, 0.25, 0.25), 60.0, "b1")
    assert summary["source_axes"] == "TCZYX"
    assert sorted(os.listdir(tmp_path)) == ["raw.ome.zarr"]


def test_ome_zarr_reader_sees_the_ingested_movie(small_movie_files, small_movie, tmp_path):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    dst = tmp_path / "raw.ome.zarr"
    ingest_movie(small_movie_files / "movie.ome.tif", dst, z_block=4)
    node = list(Reader(parse_url(str(dst)))())[0]
    assert node.data[0].chunksize == (1, 1, 4, 96, 96)
    assert np.array_equal(np.asarray(node.data[0][2, 1]), small_movie.image[2, 1])


@pytest.mark.parametrize("axes", list(LAYOUTS))
def test_tiff_without_axes_metadata_uses_the_declared_axes(tmp_path, axes):
    data = LAYOUTS[axes]
    src = tmp_path / "shaped.tif"
    tifffile.imwrite(src, data)  # tifffile records the shape, not the axes
    dst = tmp_path / "out.ome.zarr"
    ingest_movie(src, dst, axes=axes if axes != "YX" else None, voxel_size=(2.0, 0.5, 0.5),
                 time_interval=10.0)
    assert np.array_equal(open_array(dst)[...], as_tczyx(data, axes))
    assert read_meta(dst).voxel_size == (2.0, 0.5, 0.5)


@pytest.mark.parametrize("axes", ["ZYX", "CYX", "YX"])
def test_plain_tiff_page_sequence_with_declared_axes(tmp_path, axes):
    data = LAYOUTS[axes]
    src = tmp_path / "plain.tif"
    tifffile.imwrite(src, data, metadata=None)  # no description at all
    dst = tmp_path / "out.ome.zarr"
    ingest_movie(src, dst, axes=axes)
    assert np.array_equal(open_array(dst)[...], as_tczyx(data, axes))


def test_plain_page_sequence_cannot_be_split_into_t_and_z(tmp_path):
    src = tmp_path / "plain.tif"
    tifffile.imwrite(src, LAYOUTS["TZYX"], metadata=None)
    with pytest.raises(InputError, match=r"plain\.tif: the image has 3 dimensions.*OME-TIFF"):
        ingest_movie(src, tmp_path / "o.ome.zarr", axes="TZYX")


@pytest.mark.parametrize("axes", list(LAYOUTS))
def test_ome_tiff_states_its_own_axes(tmp_path, axes):
    data = LAYOUTS[axes]
    src = tmp_path / "movie.ome.tif"
    names = ("dapi", "rna")
    meta = ImageMeta(names if "C" in axes else ("c0",), (1.5, 0.3, 0.3), 5.0, "m")
    tifffile.imwrite(src, data, ome=True, metadata=ome_metadata(meta, axes))
    dst = tmp_path / "out.ome.zarr"
    ingest_movie(src, dst)
    assert np.array_equal(open_array(dst)[...], as_tczyx(data, axes))
    got = read_meta(dst)
    if "C" in axes:
        assert got.channel_names == names
    if "Z" in axes:
        assert got.voxel_size == (1.5, 0.3, 0.3)


def test_undeclared_axes_of_a_plain_3d_tiff_is_an_error(tmp_path):
    src = tmp_path / "stack.tif"
    tifffile.imwrite(src, LAYOUTS["ZYX"], metadata=None)
    with pytest.raises(InputError, match=r"stack\.tif.*does not state its axes"):
        ingest_movie(src, tmp_path / "o.ome.zarr")
    assert not (tmp_path / "o.ome.zarr").exists()


def test_dimensions_that_do_not_fit_the_axes(tmp_path):
    src = tmp_path / "stack.tif"
    tifffile.imwrite(src, LAYOUTS["ZYX"], metadata=None)
    with pytest.raises(InputError, match=r"stack\.tif: the image has 3 dimensions.*'TCZYX'"):
        ingest_movie(src, tmp_path / "o.ome.zarr", axes="TCZYX")
    with pytest.raises(InputError, match="not supported"):
        ingest_movie(src, tmp_path / "o.ome.zarr", axes="QYX")


def test_missing_and_non_tiff_files(tmp_path):
    with pytest.raises(InputError, match=r"nope\.tif: no such file"):
        ingest_movie(tmp_path / "nope.tif", tmp_path / "o.ome.zarr")
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"this is not a tiff" * 100)
    with pytest.raises(InputError, match=r"junk\.tif: not a readable TIFF"):
        ingest_movie(junk, tmp_path / "o.ome.zarr")


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_truncated_tiff_names_the_file_and_leaves_no_output(tmp_path, compression):
    src = tmp_path / "cut.ome.tif"
    meta = ImageMeta(("a", "b"), (1, 1, 1), 1.0, "cut")
    tifffile.imwrite(src, FULL, ome=True, metadata=ome_metadata(meta), compression=compression)
    data = src.read_bytes()
    src.write_bytes(data[: len(data) * 2 // 3])
    before = sha256(src)
    with pytest.raises(InputError, match=r"cut\.ome\.tif.*(truncated|corrupt|readable)"):
        ingest_movie(src, tmp_path / "o.ome.zarr")
    assert sorted(os.listdir(tmp_path)) == ["cut.ome.tif"]  # no partial store, no temp folder
    assert sha256(src) == before


def test_streaming_memory_is_a_fraction_of_the_movie(tmp_path):
    """A movie converts holding one z-block at a time (peak << movie size)."""
    T, C, Z, Y, X = 8, 2, 32, 256, 256  # 64 MiB of uint16
    src = tmp_path / "big.ome.tif"
    meta = ImageMeta(("a", "b"), (1, 1, 1), 1.0, "big")
    with tifffile.TiffWriter(src, ome=True) as tw:  # written plane by plane, never whole
        planes = (np.full((Y, X), i % 4000, np.uint16) for i in range(T * C * Z))
        tw.write(planes, shape=(T, C, Z, Y, X), dtype=np.uint16, metadata=ome_metadata(meta))
    movie_bytes = T * C * Z * Y * X * 2
    tracemalloc.start()
    ingest_movie(src, tmp_path / "big.ome.zarr", z_block=8)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < movie_bytes / 8, (f"peak {peak / 2**20:.1f} MiB for a "
                                    f"{movie_bytes / 2**20:.0f} MiB movie")
    assert int(open_array(tmp_path / "big.ome.zarr")[7, 1, 31, 0, 0]) == (T * C * Z - 1) % 4000


def test_cli_ingest(tmp_path, capsys):
    src = tmp_path / "p.tif"
    tifffile.imwrite(src, LAYOUTS["TZYX"])
    assert cli_main(["ingest", str(src), str(tmp_path / "o.ome.zarr"), "--axes", "TZYX",
                     "--voxel-size", "1,0.2,0.2"]) == 0
    assert json.loads(capsys.readouterr().out)["shape_tczyx"] == [3, 1, 5, 24, 20]
    assert cli_main(["ingest", str(tmp_path / "missing.tif"), str(tmp_path / "x")]) == 2


def test_cli_dispatches_stage_commands(capsys):
    with pytest.raises(SystemExit) as done:
        cli_main(["merge", "--help"])
    assert done.value.code == 0 and "cellspot.merge" in capsys.readouterr().out
