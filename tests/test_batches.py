import pytest

from cellspot.batches import BatchError, Rejected, discover_batches, read_samples, scan_inbox

HEADER = "batch\tpath\taxes\tchannel_names\tvoxel_size\ttime_interval\n"


def test_samples_sheet_parsed(tmp_path):
    sheet = tmp_path / "s.tsv"
    sheet.write_text(HEADER + "a\tx/a.tif\tTZYX\tdapi,mem,rna\t1,0.2,0.2\t30\nb\tb.tif\t\t\t\t\n")
    a, b = read_samples(sheet)
    assert a.name == "a" and a.axes == "TZYX" and a.channel_names == ("dapi", "mem", "rna")
    assert a.voxel_size == (1.0, 0.2, 0.2) and a.time_interval == 30.0
    assert b.axes is None and b.voxel_size is None


@pytest.mark.parametrize("row,msg", [
    ("bad name\tx.tif\t\t\t\t\n", "batch name"),
    ("a\tx.tif\t\t\t1,2\t\n", "3 values"),
    ("a\tx.tif\t\t\tz,y,x\t\n", "numbers"),
    ("a\tx.tif\t\t\t0,0.2,0.2\t\n", "finite number > 0"),
    ("a\tx.tif\t\t\tnan,0.2,0.2\t\n", "finite number > 0"),
    ("a\tx.tif\t\t\t1000000,0.2,0.2\t\n", "is its unit right"),
    ("a\tx.tif\t\t\t\t0\n", "seconds > 0"),
    ("a\tx.tif\t\t\t\t-5\n", "seconds > 0"),
])
def test_a_bad_row_is_rejected_naming_the_line(tmp_path, row, msg):
    sheet = tmp_path / "s.tsv"
    sheet.write_text(HEADER + row + "ok\tok.tif\t\t\t\t\n")
    rejected, ok = read_samples(sheet)
    assert isinstance(rejected, Rejected) and msg in rejected.reason and "line 2" in rejected.reason
    assert ok.name == "ok"


def test_a_bad_batch_does_not_block_the_others(tmp_path):
    (tmp_path / "1.tif").write_bytes(b"")
    (tmp_path / "3.tif").write_bytes(b"")
    sheet = tmp_path / "s.tsv"
    sheet.write_text(HEADER + f"a\t{tmp_path}/1.tif\t\t\t\t\na\t{tmp_path}/3.tif\t\t\t\t\n"
                     f"typo\t{tmp_path}/2.tif\t\t\t\t\nb\t{tmp_path}/3.tif\t\t\t\t\n")
    plan = discover_batches(str(sheet), None)
    assert list(plan.batches) == ["b"]
    assert "given to 2 movies" in plan.rejected["a"]
    assert "2.tif: movie not found" in plan.rejected["typo"]


def test_inbox_files_that_map_to_one_name_are_both_left_alone(tmp_path):
    for name in ("x.tif", "x.tiff", "a b.tif", "a_b.tif", "c.tif"):
        (tmp_path / name).write_bytes(b"")
    plan = discover_batches(None, str(tmp_path))
    assert list(plan.batches) == ["c"] and set(plan.rejected) == {"x", "a_b"}
    assert "rename all but one" in plan.rejected["x"]


def test_an_unreadable_sheet_stops_the_run(tmp_path):
    sheet = tmp_path / "s.tsv"
    sheet.write_text("name\tfile\n")
    with pytest.raises(BatchError, match="lacks column"):
        read_samples(sheet)
    with pytest.raises(BatchError, match="not found"):
        read_samples(tmp_path / "nope.tsv")


def test_inbox_marker_holds_back_files_being_copied(tmp_path):
    (tmp_path / "day1.ome.tif").write_bytes(b"")
    (tmp_path / "day 2.tif").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("")
    assert [b.name for b in scan_inbox(tmp_path)] == ["day 2".replace(" ", "_"), "day1"]
    (tmp_path / "day1.ome.tif.done").write_text("")
    assert [b.name for b in scan_inbox(tmp_path, marker=".done")] == ["day1"]
