import pytest

from cellspot.batches import BatchError, discover_batches, read_samples, scan_inbox

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
])
def test_samples_sheet_errors_name_the_line(tmp_path, row, msg):
    sheet = tmp_path / "s.tsv"
    sheet.write_text(HEADER + row)
    with pytest.raises(BatchError, match=msg) as err:
        read_samples(sheet)
    assert "line 2" in str(err.value)


def test_missing_columns_and_duplicates(tmp_path):
    sheet = tmp_path / "s.tsv"
    sheet.write_text("name\tfile\n")
    with pytest.raises(BatchError, match="lacks column"):
        read_samples(sheet)
    sheet.write_text(HEADER + "a\t1.tif\t\t\t\t\na\t2.tif\t\t\t\t\n")
    with pytest.raises(BatchError, match="used twice"):
        discover_batches(str(sheet), None)


def test_inbox_marker_holds_back_files_being_copied(tmp_path):
    (tmp_path / "day1.ome.tif").write_bytes(b"")
    (tmp_path / "day 2.tif").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("")
    assert [b.name for b in scan_inbox(tmp_path)] == ["day 2".replace(" ", "_"), "day1"]
    (tmp_path / "day1.ome.tif.done").write_text("")
    assert [b.name for b in scan_inbox(tmp_path, marker=".done")] == ["day1"]
