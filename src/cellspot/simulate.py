"""Synthetic 3D time-lapse movies of cells and their RNA, with exact ground truth.

The simulated sample is a monolayer of touching cells (a weighted Voronoi tessellation of
ellipsoids) that move, one or more of which divide; each cell holds a nucleus and RNA molecules
that diffuse inside their compartment, appear and vanish. The whole sample drifts (a known,
sub-pixel rigid translation). Image formation: nuclear and cytoplasmic stains blurred by a
Gaussian point-spread function, diffraction-limited RNA spots rendered analytically at sub-pixel
positions, background, uneven illumination (vignetting), Poisson shot noise, camera gain, offset
and Gaussian read noise.

Ground truth is given in the *sample frame*, i.e. the frame of t=0 that a perfect drift correction
recovers; the raw image shows the sample shifted by ``drift`` (raw = sample + drift).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy import ndimage as ndi

from .omezarr import ImageMeta, atomic_output
from .stains import ROLES

log = logging.getLogger(__name__)

CHANNELS = ROLES  # the simulator names its channels by role


class SimulationConfig(BaseModel):
    """Settings of a synthetic movie (lengths in micrometres unless the name says px)."""

    model_config = ConfigDict(extra="forbid")

    n_timepoints: int = Field(6, ge=1)
    shape: tuple[int, int, int] = Field((16, 160, 160), description="(Z, Y, X) in pixels")
    voxel_size: tuple[float, float, float] = Field((0.5, 0.25, 0.25), description="(z, y, x) µm")
    time_interval: float = Field(60.0, gt=0, description="seconds between timepoints")
    n_cells: int = Field(8, ge=0)
    cell_radius: tuple[float, float] = Field((4.0, 3.0), description="(xy, z) radius, µm")
    nucleus_fraction: float = Field(0.55, gt=0, lt=1, description="nucleus radius / cell radius")
    cell_speed: float = Field(0.4, ge=0, description="µm per timepoint")
    n_divisions: int = Field(1, ge=0)
    spots_per_cell: tuple[int, int] = (15, 35)
    nuclear_spot_fraction: float = Field(0.3, ge=0, le=1)
    spot_step: float = Field(0.08, ge=0, description="RMS step of RNA per axis per timepoint, µm")
    spot_turnover: float = Field(0.03, ge=0, le=1, description="fraction of spots that vanish "
                                 "(and are replaced) per timepoint")
    psf_sigma: tuple[float, float] = Field((1.0, 1.0), description="(z, xy) PSF sigma, px")
    spot_photons: tuple[float, float] = Field((300.0, 600.0), description="spot peak, photons")
    stain_photons: tuple[float, float] = Field((600.0, 250.0),
                                               description="(nucleus, cytoplasm) stain, photons")
    background_photons: float = 60.0
    vignetting: float = Field(0.3, ge=0, lt=1, description="illumination loss at the corners")
    drift_step: tuple[float, float, float] = Field(
        (0.3, 1.5, 1.5), description="RMS drift per timepoint (z, y, x) px")
    camera_gain: float = 1.0
    camera_offset: float = 100.0
    read_noise: float = 3.0

    @model_validator(mode="after")
    def _check(self):
        if min(self.shape) < 1 or self.spots_per_cell[0] > self.spots_per_cell[1]:
            raise ValueError("shape must be positive and spots_per_cell a (min, max) pair")
        return self


@dataclass
class SimulatedMovie:
    """A synthetic movie and its ground truth (see module docstring for frames)."""

    image: np.ndarray          # (T, C, Z, Y, X) uint16, raw frame
    cells: np.ndarray          # (T, Z, Y, X) uint16, sample frame
    nuclei: np.ndarray         # (T, Z, Y, X) uint16, sample frame, nucleus id = cell id
    spots: pd.DataFrame        # t, spot_id, z, y, x, cell_id, compartment, intensity
    lineage: pd.DataFrame      # cell_id, t_start, t_end, parent_id (CTC man_track)
    drift: pd.DataFrame        # t, dz, dy, dx (px): raw = sample + drift
    cell_table: pd.DataFrame   # t, cell_id, z, y, x, volume_vox, n_spots, n_nuclear, n_cytoplasmic
    cell_centres: pd.DataFrame  # t, cell_id, z, y, x: the true (unclipped) cell centres, px
    meta: ImageMeta
    config: SimulationConfig


# --------------------------------------------------------------------------- cell dynamics


@dataclass
class _Cell:
    cid: int
    center: np.ndarray        # (z, y, x) µm, sample frame
    velocity: np.ndarray      # µm / timepoint
    radii: np.ndarray         # (z, a, b) µm; a, b along the rotated xy axes
    angle: float
    t_start: int
    parent: int = 0
    t_end: int = -1           # last timepoint, filled at the end


def _place_cells(cfg: SimulationConfig, rng: np.random.Generator) -> list[_Cell]:
    extent = np.array(cfg.shape) * np.array(cfg.voxel_size)
    rxy, rz = cfg.cell_radius
    margin = 0.8 * rxy
    cells: list[_Cell] = []
    for _ in range(cfg.n_cells * 200):
        if len(cells) == cfg.n_cells:
            break
        yx = rng.uniform(margin, extent[1:] - margin)
        if any(np.hypot(*(yx - c.center[1:])) < 1.7 * rxy for c in cells):
            continue
        z = extent[0] / 2 + rng.normal(0, 0.1 * rz)
        direction = rng.normal(size=2)
        v = np.r_[0.0, cfg.cell_speed * direction / np.linalg.norm(direction)]
        radii = np.array([rz, rxy * rng.uniform(0.9, 1.15), rxy * rng.uniform(0.8, 1.0)])
        cells.append(_Cell(len(cells) + 1, np.r_[z, yx], v, radii, rng.uniform(0, np.pi), 0))
    if len(cells) < cfg.n_cells:
        log.warning("only %d of %d cells fit the field", len(cells), cfg.n_cells)
    return cells


def _cell_states(cfg: SimulationConfig, rng: np.random.Generator):
    """Per timepoint, the list of cells alive (positions in µm, sample frame)."""
    cells = _place_cells(cfg, rng)
    extent = np.array(cfg.shape) * np.array(cfg.voxel_size)
    n_div = min(cfg.n_divisions, len(cells))
    # Divisions happen mid-movie so that parents and daughters both live >= 1 frame.
    div_times = {c.cid: max(1, cfg.n_timepoints // 2 + i) for i, c in
                 enumerate(rng.choice(cells, n_div, replace=False))} if cfg.n_timepoints > 1 else {}
    next_id = len(cells) + 1
    alive = list(cells)
    everyone = list(cells)
    states = []
    for t in range(cfg.n_timepoints):
        if t > 0:
            born = []
            for c in list(alive):
                if div_times.get(c.cid) == t:
                    alive.remove(c)
                    c.t_end = t - 1
                    axis = np.array([0.0, np.cos(c.angle), np.sin(c.angle)])
                    for sign in (1, -1):
                        d = _Cell(next_id, c.center + sign * 0.45 * c.radii[1] * axis,
                                  c.velocity + sign * 0.5 * cfg.cell_speed * axis,
                                  c.radii * np.array([1.0, 0.8, 0.85]),
                                  c.angle + np.pi / 2, t, parent=c.cid)
                        next_id += 1
                        born.append(d)
                else:
                    c.velocity = c.velocity + np.r_[0, rng.normal(0, 0.15 * cfg.cell_speed, 2)]
            movers = [c for c in alive if c.t_start < t]
            if len(movers) > 1:
                # Cells move relative to each other; the population as a whole does not: any
                # common motion is the sample drift, which is simulated (and known) separately.
                mean_v = np.mean([c.velocity for c in movers], axis=0)
                for c in movers:
                    c.velocity = c.velocity - mean_v
            for c in movers:
                c.center = c.center + c.velocity
                for ax in (1, 2):  # reflect at the field border
                    lo, hi = 0.5 * c.radii[1], extent[ax] - 0.5 * c.radii[1]
                    if not lo <= c.center[ax] <= hi:
                        c.velocity[ax] *= -1
                        c.center[ax] = np.clip(c.center[ax], lo, hi)
            alive += born
            everyone += born
        states.append([(c.cid, c.center.copy(), c.radii.copy(), c.angle) for c in alive])
    for c in everyone:
        if c.t_end < 0:
            c.t_end = cfg.n_timepoints - 1
    lineage = pd.DataFrame([(c.cid, c.t_start, c.t_end, c.parent) for c in everyone],
                           columns=["cell_id", "t_start", "t_end", "parent_id"])
    return states, lineage


def _scaled_distance(grid: tuple[np.ndarray, ...], center, radii, angle) -> np.ndarray:
    """Ellipsoid 'radius units' distance of every grid point (µm coordinates) to a cell."""
    z, y, x = (g - c for g, c in zip(grid, center))
    ca, sa = np.cos(angle), np.sin(angle)
    a = ca * y + sa * x
    b = -sa * y + ca * x
    return np.sqrt((z / radii[0]) ** 2 + (a / radii[1]) ** 2 + (b / radii[2]) ** 2)


def _render_labels(state, grid, nucleus_fraction, dtype=np.uint16):
    """Cell and nucleus labels of one timepoint: nearest cell in scaled distance, if < 1."""
    shape = grid[0].shape
    cells = np.zeros(shape, dtype)
    nuclei = np.zeros(shape, dtype)
    if not state:
        return cells, nuclei
    dist = np.stack([_scaled_distance(grid, c, r, a) for _, c, r, a in state])
    nearest = np.argmin(dist, axis=0)
    dmin = np.take_along_axis(dist, nearest[None], 0)[0]
    ids = np.array([cid for cid, *_ in state], dtype)
    inside = dmin < 1.0
    cells[inside] = ids[nearest[inside]]
    nuc = dmin < nucleus_fraction
    nuclei[nuc] = ids[nearest[nuc]]
    return cells, nuclei


# --------------------------------------------------------------------------- RNA dynamics


def _sample_in(mask: np.ndarray, n: int, rng) -> np.ndarray:
    """``n`` uniform sub-voxel positions (px) inside a boolean mask."""
    idx = np.argwhere(mask)
    if len(idx) == 0 or n == 0:
        return np.zeros((0, 3))
    pick = idx[rng.integers(0, len(idx), n)]
    return pick + rng.uniform(-0.5, 0.5, (n, 3))


def value_at(vol: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Values of ``vol`` at the nearest voxel of each ``(N, ndim)`` position (px), clipped."""
    ijk = np.clip(np.round(pos).astype(int), 0, np.array(vol.shape) - 1)
    return vol[tuple(ijk.T)]


def _spot_tracks(cfg, states, cells, nuclei, rng) -> pd.DataFrame:
    """RNA positions per timepoint (px, sample frame) that follow their cell's motion."""
    vs = np.array(cfg.voxel_size)
    rows = []
    next_id = 1
    # spot_id -> (cell_id, offset from cell centre in µm, compartment)
    live: dict[int, tuple[int, np.ndarray, str]] = {}

    def new_spots(t, cid, center, n):
        nonlocal next_id
        n_nuc = rng.binomial(n, cfg.nuclear_spot_fraction)
        for comp, k in (("nucleus", n_nuc), ("cytoplasm", n - n_nuc)):
            region = (nuclei[t] == cid) if comp == "nucleus" else (
                (cells[t] == cid) & (nuclei[t] != cid))
            for p in _sample_in(region, k, rng):
                live[next_id] = (cid, p * vs - center, comp)
                next_id += 1

    prev_centers: dict[int, np.ndarray] = {}
    for t, state in enumerate(states):
        centers = {cid: c for cid, c, *_ in state}
        if t == 0:
            for cid, c in centers.items():
                new_spots(0, cid, c, int(rng.integers(*cfg.spots_per_cell, endpoint=True)))
        else:
            # Daughters inherit their parent's spots, re-referenced to the daughter they fall in.
            for sid, (cid, off, comp) in list(live.items()):
                if cid in centers:
                    continue
                pos = (prev_centers[cid] + off) / vs
                new_cid = int(value_at(cells[t], pos[None])[0])
                if new_cid in centers:
                    live[sid] = (new_cid, pos * vs - centers[new_cid], comp)
                else:
                    del live[sid]
            for sid in list(live):
                if rng.random() < cfg.spot_turnover:
                    del live[sid]
            counts: dict[int, int] = {}
            for cid, _, _ in live.values():
                counts[cid] = counts.get(cid, 0) + 1
            for cid, c in centers.items():
                target = int(np.mean(cfg.spots_per_cell))
                births = rng.binomial(max(target - counts.get(cid, 0), 0), 0.5)
                new_spots(t, cid, c, births)
            for sid, (cid, off, comp) in list(live.items()):
                # Diffusion within the compartment: a step that leaves it is not taken.
                step = rng.normal(0, cfg.spot_step, 3)
                pos = (centers[cid] + off + step) / vs
                inside = (nuclei[t] == cid) if comp == "nucleus" else (
                    (cells[t] == cid) & (nuclei[t] != cid))
                if value_at(inside, pos[None])[0]:
                    live[sid] = (cid, off + step, comp)
        for sid, (cid, off, comp) in live.items():
            rows.append((t, sid, *((centers[cid] + off) / vs)))
        prev_centers = centers
    spots = pd.DataFrame(rows, columns=["t", "spot_id", "z", "y", "x"])
    return spots.astype({"t": int, "spot_id": int, "z": float, "y": float, "x": float})


# --------------------------------------------------------------------------- image formation


def _render_spots(shape, positions, amplitudes, sigma) -> np.ndarray:
    """Sum of 3D Gaussians at sub-pixel positions (exact, evaluated in local windows)."""
    out = np.zeros(shape, np.float32)
    sz, sxy = sigma
    half = np.ceil(4 * np.array([sz, sxy, sxy])).astype(int)
    for p, a in zip(positions, amplitudes):
        c = np.round(p).astype(int)
        lo = np.maximum(c - half, 0)
        hi = np.minimum(c + half + 1, shape)
        if np.any(hi <= lo):
            continue
        zz, yy, xx = np.ogrid[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        g = np.exp(-((zz - p[0]) ** 2) / (2 * sz**2) - ((yy - p[1]) ** 2 + (xx - p[2]) ** 2)
                   / (2 * sxy**2))
        out[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] += a * g
    return out


def _illumination(shape, strength) -> np.ndarray:
    """Smooth vignetting: 1 at the centre, ``1 - strength`` at the corners."""
    y = np.linspace(-1, 1, shape[1])[:, None]
    x = np.linspace(-1, 1, shape[2])[None, :]
    return (1 - strength * (y**2 + x**2) / 2)[None].astype(np.float32)


def _camera(photons: np.ndarray, cfg: SimulationConfig, rng) -> np.ndarray:
    counts = rng.poisson(np.maximum(photons, 0)).astype(np.float32) * cfg.camera_gain
    counts += cfg.camera_offset + rng.normal(0, cfg.read_noise, photons.shape)
    return np.clip(np.round(counts), 0, 65535).astype(np.uint16)


# --------------------------------------------------------------------------- the movie


def simulate_movie(config: SimulationConfig | None = None, seed: int = 0) -> SimulatedMovie:
    """Simulate a movie and its ground truth.

    Parameters
    ----------
    config : SimulationConfig, optional
        Defaults to a small movie (6 timepoints, 16 x 160 x 160, 8 cells, 1 division).
    seed : int
        Seed of the random generator; the same seed gives the same movie.
    """
    cfg = config or SimulationConfig()
    rng = np.random.default_rng(seed)
    T, (Z, Y, X) = cfg.n_timepoints, cfg.shape
    vs = np.array(cfg.voxel_size)

    states, lineage = _cell_states(cfg, rng)
    drift = np.zeros((T, 3))
    if T > 1:
        drift[1:] = np.cumsum(rng.normal(0, 1, (T - 1, 3)) * np.array(cfg.drift_step), axis=0)

    sample_grid = np.meshgrid(*(np.arange(n) * v for n, v in zip(cfg.shape, vs)), indexing="ij")
    cells = np.zeros((T, Z, Y, X), np.uint16)
    nuclei = np.zeros_like(cells)
    for t, state in enumerate(states):
        cells[t], nuclei[t] = _render_labels(state, sample_grid, cfg.nucleus_fraction)

    spots = _spot_tracks(cfg, states, cells, nuclei, rng)
    spots["intensity"] = rng.uniform(*cfg.spot_photons, len(spots))
    # Keep spots whose sample and raw positions both lie in the field.
    raw_pos = spots[["z", "y", "x"]].to_numpy() + drift[spots["t"].to_numpy()]
    inside = np.all((raw_pos >= 0) & (raw_pos <= np.array(cfg.shape) - 1), axis=1) & np.all(
        (spots[["z", "y", "x"]].to_numpy() >= 0)
        & (spots[["z", "y", "x"]].to_numpy() <= np.array(cfg.shape) - 1), axis=1)
    spots = spots[inside].reset_index(drop=True)
    pos = spots[["z", "y", "x"]].to_numpy()
    t_idx = spots["t"].to_numpy()
    spots["cell_id"] = cells[t_idx, *np.round(pos).astype(int).T].astype(int)
    in_nuc = nuclei[t_idx, *np.round(pos).astype(int).T] > 0
    spots["compartment"] = np.where(spots["cell_id"] == 0, "outside",
                                    np.where(in_nuc, "nucleus", "cytoplasm"))

    image = np.zeros((T, 3, Z, Y, X), np.uint16)
    illum = _illumination(cfg.shape, cfg.vignetting)
    for t, state in enumerate(states):
        raw_grid = [g - d * v for g, d, v in zip(sample_grid, drift[t], vs)]
        raw_cells, raw_nuclei = _render_labels(state, raw_grid, cfg.nucleus_fraction)
        texture = ndi.gaussian_filter(rng.normal(1.0, 0.25, cfg.shape), 1.5).astype(np.float32)
        nuc = (raw_nuclei > 0) * cfg.stain_photons[0] * texture
        cyto = ((raw_cells > 0) * np.where(raw_nuclei > 0, 0.35, 1.0)
                * cfg.stain_photons[1] * texture)
        sel = t_idx == t
        rna = _render_spots(cfg.shape, pos[sel] + drift[t], spots["intensity"].to_numpy()[sel],
                            cfg.psf_sigma)
        rna += (raw_cells > 0) * 15.0  # weak cellular autofluorescence
        for c, signal in enumerate((nuc, cyto, rna)):
            if c < 2:
                signal = ndi.gaussian_filter(signal, (cfg.psf_sigma[0], cfg.psf_sigma[1],
                                                      cfg.psf_sigma[1]))
            image[t, c] = _camera((signal + cfg.background_photons) * illum, cfg, rng)

    drift_df = pd.DataFrame({"t": np.arange(T), "dz": drift[:, 0], "dy": drift[:, 1],
                             "dx": drift[:, 2]})
    meta = ImageMeta(channel_names=CHANNELS, voxel_size=tuple(cfg.voxel_size),
                     time_interval=cfg.time_interval, name="simulated")
    centres = pd.DataFrame(
        [(t, cid, *(c / vs)) for t, state in enumerate(states) for cid, c, *_ in state],
        columns=["t", "cell_id", "z", "y", "x"]).astype({"t": int, "cell_id": int})
    return SimulatedMovie(image, cells, nuclei, spots, lineage, drift_df,
                          cell_table(cells, nuclei, spots), centres, meta, cfg)


def cell_table(cells: np.ndarray, nuclei: np.ndarray, spots: pd.DataFrame) -> pd.DataFrame:
    """Per cell and timepoint: centroid (px), volumes (voxels) and RNA counts by compartment."""
    rows = []
    for t in range(cells.shape[0]):
        ids = np.unique(cells[t])
        ids = ids[ids > 0]
        if len(ids) == 0:
            continue
        com = ndi.center_of_mass(np.ones_like(cells[t]), cells[t], ids)
        vol = ndi.sum_labels(np.ones_like(cells[t]), cells[t], ids)
        nvol = ndi.sum_labels(nuclei[t] > 0, cells[t], ids)
        st = spots[spots["t"] == t]
        for cid, c, v, nv in zip(ids, com, vol, nvol):
            s = st[st["cell_id"] == cid]
            rows.append((t, int(cid), *c, int(v), int(nv), len(s),
                         int((s["compartment"] == "nucleus").sum()),
                         int((s["compartment"] == "cytoplasm").sum())))
    return pd.DataFrame(rows, columns=["t", "cell_id", "z", "y", "x", "volume_vox",
                                       "nucleus_volume_vox", "n_spots", "n_nuclear",
                                       "n_cytoplasmic"])


# --------------------------------------------------------------------------- files


def ome_metadata(meta: ImageMeta, axes: str = "TCZYX") -> dict:
    """tifffile ``metadata=`` for an OME-TIFF with physical sizes, time step and channel names."""
    md = {"axes": axes, "Name": meta.name}
    for ax, size in zip("ZYX", meta.voxel_size):
        if ax in axes:
            md[f"PhysicalSize{ax}"] = float(size)
            md[f"PhysicalSize{ax}Unit"] = "µm"
    if "T" in axes:
        md["TimeIncrement"] = float(meta.time_interval)
        md["TimeIncrementUnit"] = "s"
    if "C" in axes:
        md["Channel"] = {"Name": list(meta.channel_names)}
    return md


def write_simulation(movie: SimulatedMovie, outdir: str | Path) -> Path:
    """Write ``movie.ome.tif`` and ``truth/`` (labels as TIFF, tables as CSV) into ``outdir``.

    Returns the path of the OME-TIFF.
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    tif = outdir / "movie.ome.tif"
    with atomic_output(tif) as tmp:
        tifffile.imwrite(tmp, movie.image, ome=True, photometric="minisblack",
                         metadata=ome_metadata(movie.meta), compression="zlib")
    with atomic_output(outdir / "truth") as tmp:
        tmp.mkdir()
        tifffile.imwrite(tmp / "cells.tif", movie.cells, compression="zlib",
                         metadata={"axes": "TZYX"})
        tifffile.imwrite(tmp / "nuclei.tif", movie.nuclei, compression="zlib",
                         metadata={"axes": "TZYX"})
        movie.spots.to_csv(tmp / "spots.csv", index=False)
        movie.lineage.to_csv(tmp / "lineage.csv", index=False)
        movie.drift.to_csv(tmp / "drift.csv", index=False)
        movie.cell_table.to_csv(tmp / "cells.csv", index=False)
        movie.cell_centres.to_csv(tmp / "cell_centres.csv", index=False)
        (tmp / "simulation.json").write_text(json.dumps(
            {"config": movie.config.model_dump(mode="json"),
             "voxel_size": list(movie.meta.voxel_size),
             "time_interval": movie.meta.time_interval,
             "channel_names": list(movie.meta.channel_names),
             "frame": "labels and positions in the sample frame (t=0); raw = sample + drift"},
            indent=2))
    return tif


def load_truth(outdir: str | Path) -> dict:
    """Read the ``truth/`` folder written by :func:`write_simulation` into ``outdir``."""
    return read_truth_folder(Path(outdir) / "truth")


def read_truth_folder(truth: str | Path) -> dict:
    """Read a truth folder itself: labels, tables (``cells_table`` = cells.csv, ``centres`` =
    cell_centres.csv) and ``info``."""
    truth = Path(truth)
    out = {name: tifffile.imread(truth / f"{name}.tif") for name in ("cells", "nuclei")}
    files = {"spots": "spots", "lineage": "lineage", "drift": "drift", "cells_table": "cells",
             "centres": "cell_centres"}
    for name, stem in files.items():
        out[name] = pd.read_csv(truth / f"{stem}.csv")
    out["info"] = json.loads((truth / "simulation.json").read_text())
    return out
