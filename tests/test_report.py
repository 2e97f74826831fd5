"""The report stage on simulated truth: statistics vs known answers, empty batches, browser.

Stage inputs are built from the simulator's truth as merge and track would build them
(`cellspot_bench.truth_tables`), so these checks do not depend on the other stages.
"""

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cellspot import omezarr
from cellspot.report import build, tables
from cellspot.simulate import SimulationConfig, simulate_movie
from cellspot_bench import truth_tables as truth

SEED = 0
NOISE_PX = 0.3  # localisation error of a good spot detector


@pytest.fixture(scope="module")
def demo_movie():
    """The standard demo movie: the simulator's default configuration."""
    return simulate_movie(SimulationConfig(), seed=SEED)


@pytest.fixture(scope="module")
def demo_report(demo_movie, tmp_path_factory):
    d = truth.write_batch(demo_movie, tmp_path_factory.mktemp("demo") / "demo",
                          position_noise_px=NOISE_PX, seed=SEED)
    outputs = build.ReportOutputs.from_batch_dir(d)
    result = build.make_report(build.ReportInputs.from_batch_dir(d), outputs,
                               build.ReportConfig(n_permutations=500), batch="demo")
    return d, outputs, result


def _rel_err(est, ref):
    return (np.asarray(est, float) - np.asarray(ref, float)) / np.asarray(ref, float)


def test_rna_counts_exact_without_localisation_error(demo_movie):
    tb = truth.tables_from_truth(demo_movie, position_noise_px=0.0)
    vs, dt = demo_movie.meta.voxel_size, demo_movie.meta.time_interval
    ctp = tables.cell_timepoint_table(tb["cells"], tb["nuclei"], tb["spots"],
                                      tb["cell_tracks"], vs, dt)
    ref = demo_movie.cell_table.rename(columns={"cell_id": "label", "n_spots": "true_n"})
    j = ctp.merge(ref, on=["t", "label"], validate="one_to_one")
    assert len(j) == len(ref) == len(ctp)
    np.testing.assert_array_equal(j["rna_total"], j["true_n"])
    np.testing.assert_array_equal(j["n_spots"], j["true_n"])  # one molecule per spot here
    np.testing.assert_array_equal(j["rna_nuclear"], j["n_nuclear"])
    np.testing.assert_array_equal(j["rna_cytoplasmic"], j["n_cytoplasmic"])


def test_rna_counts_within_10_percent_of_truth(demo_movie, demo_report):
    _, _, result = demo_report
    ctp = result.tables["cell_stats"]
    ref = demo_movie.cell_table.rename(columns={"cell_id": "label", "n_spots": "true_n"})
    j = ctp.merge(ref, on=["t", "label"], validate="one_to_one")
    err = _rel_err(j["rna_total"], j["true_n"])
    total = _rel_err(j["rna_total"].sum(), j["true_n"].sum())
    print(f"\nRNA per cell with {NOISE_PX} px localisation error, {len(j)} cell-timepoints: "
          f"mean |error| {100 * np.abs(err).mean():.1f}%, "
          f"median {100 * np.median(np.abs(err)):.1f}%, "
          f"max {100 * np.abs(err).max():.1f}%, total {100 * total:+.1f}%")
    assert np.abs(err).mean() < 0.10
    assert abs(total) < 0.10
    nuc = _rel_err(j["rna_nuclear"].sum(), j["n_nuclear"].sum())
    print(f"nuclear RNA total {100 * nuc:+.1f}%")
    assert abs(nuc) < 0.10


def test_cell_speeds_within_10_percent_of_truth(demo_movie, demo_report):
    _, _, result = demo_report
    ctr = result.tables["cell_track_stats"]
    ref = truth.truth_cell_speeds(demo_movie, SEED)
    j = ctr.merge(ref, on="track_id", validate="one_to_one").dropna(
        subset=["mean_speed_um_s", "true_speed_um_s"])
    assert len(j) == len(ref)
    err = _rel_err(j["mean_speed_um_s"], j["true_speed_um_s"])
    steps = j["n_timepoints_x"] - 1
    pooled = _rel_err((j["mean_speed_um_s"] * steps).sum(), (j["true_speed_um_s"] * steps).sum())
    print("\nper-track speed error (%):",
          {int(k): round(float(100 * e), 1) for k, e in zip(j["track_id"], err)})
    print(f"median |error| {100 * np.median(np.abs(err)):.1f}%, max {100 * np.abs(err).max():.1f}%,"
          f" pooled over all steps {100 * pooled:+.1f}%")
    assert np.median(np.abs(err)) < 0.10
    assert abs(pooled) < 0.10
    # Tracks seen for 6 frames are within 10%; the short daughters (2 steps) are not always:
    # their label centroid is pulled by the neighbouring daughter right after division.
    assert np.all(np.abs(err[j["n_timepoints_x"] >= 5]) < 0.10)


def test_division_and_lineage(demo_movie, demo_report):
    ctr = demo_report[2].tables["cell_track_stats"].set_index("track_id")
    lin = demo_movie.lineage.set_index("cell_id")
    for parent, kids in lin[lin["parent_id"] > 0].groupby("parent_id").groups.items():
        assert ctr.loc[parent, "divides"]
        assert ctr.loc[parent, "daughters"] == ",".join(str(k) for k in sorted(kids))
        assert ctr.loc[parent, "division_t"] == lin.loc[parent, "t_end"]
    assert ctr["divides"].sum() == (lin.groupby("parent_id").size().index > 0).sum()


def test_colocalisation_finds_the_simulated_nuclear_enrichment(demo_movie, demo_report):
    # The simulator puts 30% of RNA in the nucleus, which holds ~0.55^3 = 17% of the cell volume.
    c = demo_report[2].coloc
    frac = demo_movie.config.nuclear_spot_fraction
    print(f"\nnuclear fraction observed {c.nuclear_fraction.observed:.3f} (simulated {frac}), "
          f"null {c.nuclear_fraction.null_mean:.3f}, p {c.nuclear_fraction.p_two_sided:.3g}; "
          f"distance to nucleus {c.distance.observed:.2f} µm vs null "
          f"{c.distance.null_mean:.2f} µm, p {c.distance.p_two_sided:.3g}")
    assert abs(c.nuclear_fraction.observed - frac) < 0.05
    assert c.nuclear_fraction.null_mean < frac - 0.08
    assert c.nuclear_fraction.p_greater < 0.01 and c.distance.p_less < 0.01


def test_rna_diffusion_relative_to_cell(demo_movie, demo_report):
    rtr = demo_report[2].tables["rna_track_stats"]
    cfg = demo_movie.config
    d_true = cfg.spot_step ** 2 / (2 * cfg.time_interval)
    d_cell = rtr["diffusion_in_cell_um2_s"].median()
    d_lab = rtr["diffusion_um2_s"].median()
    print(f"\nRNA D: relative to cell {d_cell:.2e} µm²/s (truth {d_true:.2e}, steps rejected at "
          f"compartment walls lower it), lab frame {d_lab:.2e} (carried by the cell)")
    assert 0.5 * d_true < d_cell < 1.5 * d_true
    assert d_lab > 10 * d_cell


def test_outputs_written_and_self_contained(demo_report):
    _, outputs, result = demo_report
    for p in outputs.all_paths():
        assert p.exists() and p.stat().st_size > 0, p
    page = outputs.html.read_text()
    assert not re.search(r"(src|href)\s*=\s*['\"](?!data:)", page), "external reference"
    assert "http://" not in page and "https://" not in page
    assert page.count("<img") == len(build.FIGURES)
    back = pd.read_parquet(outputs.table("cell_stats", "parquet"))
    pd.testing.assert_frame_equal(back, result.tables["cell_stats"], check_dtype=False)
    assert list(pd.read_csv(outputs.table("cell_track_stats", "csv")).columns) == \
        tables.CELL_TRACK_COLUMNS


def _empty_batch(movie, d: Path, no_cells: bool) -> Path:
    """A batch as merge would leave it for a field without cells, or cells without RNA."""
    truth.write_batch(movie, d)
    for name in (["cells", "nuclei", "cell_tracks"] if no_cells else []) + ["spots",
                                                                            "spot_tracks"]:
        p = d / "tables" / f"{name}.parquet"
        pd.read_parquet(p).iloc[:0].to_parquet(p, index=False)
    if no_cells:
        for name in ("cells", "nuclei"):
            arr = omezarr.open_array(d / "labels" / f"{name}.zarr", mode="r+")
            arr[...] = 0
    return d


@pytest.fixture(scope="module")
def small_movie():
    return simulate_movie(SimulationConfig(n_timepoints=3, shape=(8, 64, 64), n_cells=2,
                                           n_divisions=0), seed=1)


@pytest.mark.parametrize("no_cells", [True, False], ids=["no_cells", "no_rna"])
def test_empty_batch_report_says_so(small_movie, tmp_path, no_cells):
    d = _empty_batch(small_movie, tmp_path / "b", no_cells)
    outputs = build.ReportOutputs.from_batch_dir(d)
    result = build.make_report(build.ReportInputs.from_batch_dir(d), outputs, batch="empty")
    page = outputs.html.read_text()
    assert "No RNA spots were found in this batch" in page
    assert ("No cells were found in this batch" in page) == no_cells
    for p in outputs.all_paths():
        assert p.exists(), p
    s = result.tables["batch_summary"].iloc[0]
    assert s["n_rna_spots"] == 0 and "No RNA" in s["notes"]
    if not no_cells:
        assert (result.tables["cell_stats"]["rna_total"] == 0).all()
        assert len(result.tables["cell_stats"]) == len(small_movie.cell_table)


def test_missing_table_is_named(small_movie, tmp_path):
    d = truth.write_batch(small_movie, tmp_path / "b")
    (d / "tables" / "spots.parquet").unlink()
    with pytest.raises(tables.ReportInputError, match="spots.parquet"):
        build.compute(build.ReportInputs.from_batch_dir(d))


def test_summary_across_batches(demo_report, small_movie, tmp_path):
    d = _empty_batch(small_movie, tmp_path / "b", no_cells=True)
    build.make_report(build.ReportInputs.from_batch_dir(d),
                      build.ReportOutputs.from_batch_dir(d), batch="empty")
    outs = [demo_report[1].table("batch_summary", "parquet"),
            build.ReportOutputs.from_batch_dir(d).table("batch_summary", "parquet")]
    df = build.summarise_batches(outs, tmp_path / "s.parquet", tmp_path / "s.csv")
    assert df["batch"].tolist() == ["demo", "empty"]
    assert df.loc[1, "n_cell_tracks"] == 0 and df.loc[0, "n_cell_tracks"] > 0
    assert len(pd.read_csv(tmp_path / "s.csv")) == 2


# --------------------------------------------------------------------------- browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROME_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"]
_CHECK = """
<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(
  e.message || ('failed to load ' + (e.target && (e.target.src || e.target.href)))), true);
window.addEventListener('load', () => {
  const imgs = Array.from(document.images).map(i => [i.complete, i.naturalWidth]);
  document.documentElement.setAttribute('data-check',
    JSON.stringify({images: imgs, errors: window.__errors}));
});
</script>
"""


def _browser_check(page: Path) -> tuple[list, list]:
    """(per image [complete, naturalWidth], errors) of the page in headless Chromium."""
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    try:
        try:
            from selenium import webdriver
            from selenium.webdriver.chrome.service import Service
        except ImportError:  # no selenium: dump the DOM of a copy with a checking script
            probe = Path(profile) / "page.html"
            probe.write_text(page.read_text().replace("<head>", "<head>" + _CHECK, 1))
            out = subprocess.run(
                [CHROMIUM, *CHROME_FLAGS, f"--user-data-dir={profile}/data",
                 "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
                capture_output=True, text=True, timeout=120)
            m = re.search(r"data-check=\"([^\"]*)\"", out.stdout)
            assert m, f"no check result from chromium: {out.stderr[-2000:]}"
            res = json.loads(m.group(1).replace("&quot;", '"'))
            return res["images"], res["errors"]
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for a in CHROME_FLAGS + [f"--user-data-dir={profile}"]:
            opts.add_argument(a)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver_path = shutil.which("chromedriver")
        service = Service(driver_path) if driver_path else Service()
        driver = webdriver.Chrome(service=service, options=opts)
        try:
            driver.get(page.as_uri())
            images = driver.execute_script(
                "return Array.from(document.images).map(i => [i.complete, i.naturalWidth])")
            errors = [e["message"] for e in driver.get_log("browser")
                      if e["level"] in ("SEVERE", "ERROR")]
            return images, errors
        finally:
            driver.quit()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(demo_report, small_movie, tmp_path):
    empty = _empty_batch(small_movie, tmp_path / "b", no_cells=True)
    empty_out = build.ReportOutputs.from_batch_dir(empty)
    build.make_report(build.ReportInputs.from_batch_dir(empty), empty_out, batch="empty")
    for page in (demo_report[1].html, empty_out.html):
        images, errors = _browser_check(page)
        assert len(images) == len(build.FIGURES), page
        assert all(complete and width > 0 for complete, width in images), images
        assert errors == [], errors


def test_distance_to_nucleus_computed_when_missing(small_movie, tmp_path):
    d = truth.write_batch(small_movie, tmp_path / "b")
    p = d / "tables" / "spots.parquet"
    spots = pd.read_parquet(p)
    spots.drop(columns="distance_to_nucleus_um").to_parquet(p, index=False)
    result = build.compute(build.ReportInputs.from_batch_dir(d),
                           build.ReportConfig(n_permutations=20))
    ctp = result.tables["cell_stats"]
    expect = (spots[spots.cell_id > 0].groupby(["t", "cell_id"])["distance_to_nucleus_um"]
              .mean().rename_axis(["t", "label"]).rename("expect").reset_index())
    j = ctp.merge(expect, on=["t", "label"])
    assert len(j) > 0 and j["rna_mean_distance_to_nucleus_um"].notna().all()
    np.testing.assert_allclose(j["rna_mean_distance_to_nucleus_um"], j["expect"])
    assert spots["distance_to_nucleus_um"].lt(0).any()  # signed: some RNA inside nuclei


def test_command_line(small_movie, tmp_path, capsys):
    from cellspot.report.__main__ import main

    d = truth.write_batch(small_movie, tmp_path / "b7")
    assert main(["batch", str(d)]) == 0
    assert "cellspot report: b7" in (d / "report" / "report.html").read_text()
    assert main(["summary", str(d / "tables" / "batch_summary.parquet"), "-o",
                 str(tmp_path / "s")]) == 0
    assert pd.read_csv(tmp_path / "s" / "batches.csv")["batch"].tolist() == ["b7"]
    assert main(["batch", str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err


def test_cells_without_nuclei_or_tracks_are_reported(small_movie, tmp_path):
    d = truth.write_batch(small_movie, tmp_path / "b")
    for name in ("nuclei", "cell_tracks", "spot_tracks"):
        p = d / "tables" / f"{name}.parquet"
        pd.read_parquet(p).iloc[:0].to_parquet(p, index=False)
    omezarr.open_array(d / "labels" / "nuclei.zarr", mode="r+")[...] = 0
    result = build.compute(build.ReportInputs.from_batch_dir(d),
                           build.ReportConfig(n_permutations=20))
    text = " ".join(result.notes)
    assert "No nuclei were found" in text and "not tracked" in text
    assert result.coloc.n_spots == 0 and np.isnan(result.coloc.distance.p_two_sided)
    ctp = result.tables["cell_stats"]
    assert ctp["speed_um_s"].isna().all() and ctp["rna_total"].sum() > 0


def test_report_on_tracks_from_the_track_stage(demo_movie, tmp_path):
    """Cell and RNA tracks from cellspot.track (btrack) instead of the truth identities."""
    track = pytest.importorskip("cellspot.track")
    d = truth.write_batch(demo_movie, tmp_path / "b", position_noise_px=NOISE_PX, seed=SEED)
    vs, shape = demo_movie.meta.voxel_size, demo_movie.cells.shape[1:]
    cells = pd.read_parquet(d / "tables" / "cells.parquet")
    spots = pd.read_parquet(d / "tables" / "spots.parquet")
    root = Path(__file__).resolve().parents[1] / "config" / "btrack"
    try:
        ct = track.track_cells(cells, root / "cell_config.json", vs, shape=shape)
        st = track.track_spots(spots, root / "spot_config.json", vs, cell_tracks=ct, shape=shape)
    except OSError as exc:  # btrack's libtracker.so not loadable on this machine
        pytest.skip(f"btrack unavailable: {exc}")
    ct.to_parquet(d / "tables" / "cell_tracks.parquet", index=False)
    st.to_parquet(d / "tables" / "spot_tracks.parquet", index=False)
    result = build.compute(build.ReportInputs.from_batch_dir(d),
                           build.ReportConfig(n_permutations=50))
    ctr = result.tables["cell_track_stats"]
    cell_of = ct[ct["label"] > 0].groupby("track_id")["label"].agg(lambda s: s.mode().iloc[0])
    j = ctr.assign(cell=ctr["track_id"].map(cell_of)).merge(
        truth.truth_cell_speeds(demo_movie, SEED), left_on="cell", right_on="track_id")
    err = _rel_err(j["mean_speed_um_s"], j["true_speed_um_s"])
    print(f"\nbtrack tracks: {len(ctr)} cell tracks ({len(demo_movie.lineage)} true), speed "
          f"|error| median {100 * np.median(np.abs(err)):.1f}%, max {100 * np.abs(err).max():.1f}%;"
          f" RNA D in cell median "
          f"{result.tables['rna_track_stats']['diffusion_in_cell_um2_s'].median():.2e}")
    assert len(ctr) == len(demo_movie.lineage)
    assert ctr["divides"].sum() == (demo_movie.lineage["parent_id"] > 0).sum() // 2
    assert np.median(np.abs(err)) < 0.10


def test_report_captions_are_generated_from_the_figures():
    """workflow/report/<figure>.rst (Snakemake --report) are FIGURES' captions, not copies."""
    for name, text in build.figure_captions().items():
        path = build.CAPTIONS_DIR / f"{name}.rst"
        assert path.read_text() == text, "run: python -m cellspot.report captions"
