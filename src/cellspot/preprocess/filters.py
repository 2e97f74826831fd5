"""Denoising and background filters: pure functions on volumes, their settings, and the chunked
run over a dask array with a halo that makes it equal to the whole-volume result."""

from __future__ import annotations

import math
from typing import Annotated, Literal, Sequence

import dask.array as da
import numpy as np
import scipy.ndimage as ndi
from pydantic import BaseModel, ConfigDict, Field, field_validator

from cellspot.register import (
    map_overlap_exact,
)

PositiveFloat = Annotated[float, Field(gt=0)]
# a length in micrometres: one value, or one per axis (z, y, x)
Length = PositiveFloat | tuple[PositiveFloat, PositiveFloat, PositiveFloat]



# --------------------------------------------------------------------------- pure filters


def _per_axis(value: float | Sequence[float], voxel_size: Sequence[float]) -> np.ndarray:
    """A length in micrometres (scalar or per axis) as pixels per axis ``(z, y, x)``."""
    um = np.broadcast_to(np.asarray(value, dtype=float), (3,))
    return um / np.asarray(voxel_size, dtype=float)


def ellipsoid_footprint(radius_px: Sequence[float]) -> np.ndarray:
    """Boolean ellipsoid with semi-axes ``radius_px`` (at least one voxel: the centre)."""
    half = [int(math.floor(r)) for r in radius_px]
    grids = np.meshgrid(*[np.arange(-h, h + 1) for h in half], indexing="ij")
    dist = sum((g / max(r, 1e-9)) ** 2 for g, r in zip(grids, radius_px))
    return dist <= 1.0


def gaussian_smooth(image: np.ndarray, sigma_px: Sequence[float],
                    truncate: float = 4.0) -> np.ndarray:
    """Gaussian smoothing with a per-axis ``sigma_px`` (edges: ``reflect``)."""
    return ndi.gaussian_filter(image, sigma=tuple(sigma_px), truncate=truncate, mode="reflect")


def nl_means(image: np.ndarray, patch_size: int, patch_distance: int, h: float,
             fast_mode: bool = True) -> np.ndarray:
    """Non-local means (scikit-image); ``h`` is in the image's intensity units."""
    from skimage.restoration import denoise_nl_means

    out = denoise_nl_means(image, patch_size=patch_size, patch_distance=patch_distance, h=h,
                           fast_mode=fast_mode, channel_axis=None)
    # scikit-image drops a trailing axis of length 1 (it reads it as 2D)
    return out.reshape(image.shape).astype(image.dtype, copy=False)


def white_tophat(image: np.ndarray, radius_px: Sequence[float]) -> np.ndarray:
    """Background subtraction by a white top-hat with an ellipsoidal flat footprint."""
    return ndi.white_tophat(image, footprint=ellipsoid_footprint(radius_px), mode="reflect")


def rolling_ball(image: np.ndarray, radius_px: Sequence[float], height: float) -> np.ndarray:
    """Background subtraction by scikit-image's rolling ball (ellipsoid kernel).

    ``height`` is the ball's extent along the intensity axis, in the image's intensity units.
    """
    from skimage.restoration import ellipsoid_kernel
    from skimage.restoration import rolling_ball as _rolling_ball

    shape = [2 * max(int(math.floor(r)), 1) + 1 for r in radius_px]
    kernel = ellipsoid_kernel(shape, height)
    # one OpenMP thread: dask already runs one block per thread
    background = _rolling_ball(image, kernel=kernel, workers=1)
    return image - background


# --------------------------------------------------------------------------- filter settings


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GaussianFilter(StrictModel):
    """Gaussian smoothing; ``sigma_um`` in micrometres (one value or ``(z, y, x)``)."""

    kind: Literal["gaussian"] = "gaussian"
    sigma_um: Length
    truncate: float = Field(4.0, gt=0)

    def halo(self, voxel_size: Sequence[float]) -> tuple[int, int, int]:
        # scipy's kernel radius is int(truncate * sigma + 0.5)
        return tuple(int(self.truncate * s + 0.5) for s in _per_axis(self.sigma_um, voxel_size))

    def apply(self, image: np.ndarray, voxel_size: Sequence[float]) -> np.ndarray:
        return gaussian_smooth(image, _per_axis(self.sigma_um, voxel_size), self.truncate)


class NLMeansFilter(StrictModel):
    """Non-local means; patch sizes in pixels, ``h`` as a fraction of the normalised range."""

    kind: Literal["nl_means"] = "nl_means"
    patch_size: int = Field(3, ge=1)
    patch_distance: int = Field(3, ge=1)
    h: float = Field(0.05, gt=0)
    fast_mode: bool = True

    def halo(self, voxel_size: Sequence[float]) -> tuple[int, int, int]:
        # a voxel's weights read patches centred up to patch_distance away (+1: the fast mode's
        # integral image)
        r = self.patch_distance + self.patch_size // 2 + 1
        return (r, r, r)

    def apply(self, image: np.ndarray, voxel_size: Sequence[float]) -> np.ndarray:
        return nl_means(image, self.patch_size, self.patch_distance, self.h, self.fast_mode)


class TopHatFilter(StrictModel):
    """White top-hat background subtraction; ``radius_um`` larger than the spots."""

    kind: Literal["tophat"] = "tophat"
    radius_um: Length

    def halo(self, voxel_size: Sequence[float]) -> tuple[int, int, int]:
        # opening = dilation of an erosion: two footprint radii
        return tuple(2 * int(math.floor(r)) for r in _per_axis(self.radius_um, voxel_size))

    def apply(self, image: np.ndarray, voxel_size: Sequence[float]) -> np.ndarray:
        return white_tophat(image, _per_axis(self.radius_um, voxel_size))


class RollingBallFilter(StrictModel):
    """Rolling-ball background subtraction; ``height`` in normalised intensity units."""

    kind: Literal["rolling_ball"] = "rolling_ball"
    radius_um: Length
    height: float = Field(1.0, gt=0)

    def halo(self, voxel_size: Sequence[float]) -> tuple[int, int, int]:
        return tuple(2 * max(int(math.floor(r)), 1) for r in _per_axis(self.radius_um, voxel_size))

    def apply(self, image: np.ndarray, voxel_size: Sequence[float]) -> np.ndarray:
        return rolling_ball(image, _per_axis(self.radius_um, voxel_size), self.height)


Filter = Annotated[
    GaussianFilter | NLMeansFilter | TopHatFilter | RollingBallFilter,
    Field(discriminator="kind"),
]


class PercentileNorm(StrictModel):
    """Map the ``low`` percentile of the whole channel to 0 and the ``high`` one to 1."""

    low: float = Field(1.0, ge=0, le=100)
    high: float = Field(99.8, ge=0, le=100)

    @field_validator("high")
    @classmethod
    def _ordered(cls, v, info):
        if "low" in info.data and v <= info.data["low"]:
            raise ValueError("high percentile must be above the low one")
        return v


class ChannelSettings(StrictModel):
    """What is done to one channel: normalisation, then the filters in order."""

    normalize: PercentileNorm | None = Field(default_factory=PercentileNorm)
    filters: list[Filter] = Field(default_factory=list)


def apply_filters(image: np.ndarray, filters: Sequence, voxel_size: Sequence[float]) -> np.ndarray:
    """Apply a chain of filters to a 3D volume (float32 in, float32 out)."""
    out = image
    for f in filters:
        out = f.apply(out, voxel_size).astype(np.float32, copy=False)
    return out


def filter_halo(filters: Sequence, voxel_size: Sequence[float]) -> tuple[int, int, int]:
    """Halo ``(z, y, x)`` in voxels that makes a chunk of the filtered chain exact."""
    total = np.zeros(3, dtype=int)
    for f in filters:
        total += np.asarray(f.halo(voxel_size), dtype=int)
    return tuple(int(v) for v in total)


def _filter_block(block: np.ndarray, filters, voxel_size) -> np.ndarray:
    # a block is (..., z, y, x): filter every 3D volume of the leading axes on its own
    lead = block.shape[:-3]
    out = np.empty(block.shape, dtype=np.float32)
    for idx in np.ndindex(*lead):
        out[idx] = apply_filters(block[idx].astype(np.float32, copy=False), filters, voxel_size)
    return out


def filter_dask(arr: da.Array, filters: Sequence, voxel_size: Sequence[float]) -> da.Array:
    """Run a filter chain over the last three axes of a dask array, chunk by chunk.

    Leading axes (time) get no halo; the spatial halo is :func:`filter_halo`.
    """
    if not filters:
        return arr.astype(np.float32)
    hz, hy, hx = filter_halo(filters, voxel_size)
    depth = {i: 0 for i in range(arr.ndim - 3)}
    depth.update({arr.ndim - 3: hz, arr.ndim - 2: hy, arr.ndim - 1: hx})
    return map_overlap_exact(arr, _filter_block, depth, filters=list(filters),
                             voxel_size=tuple(voxel_size))


