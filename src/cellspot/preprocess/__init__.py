"""Denoising, percentile normalisation and drift correction of ``tczyx`` movies, chunk by chunk.

Modules: :mod:`.filters` (the filters, their settings, the chunked run), :mod:`.intensity`
(whole-movie statistics, normalisation, one channel's pass), :mod:`.run` (the stage's settings,
scheduler and driver).

The filters are small pure functions on numpy volumes. :func:`filter_dask` runs a channel's chain
of filters over a dask array with ``map_overlap`` and a halo derived from each filter's
parameters (:func:`filter_halo`), so the chunked result equals the whole-volume result: at an
inner chunk border the halo holds real neighbours, and at the border of the volume there is no
halo (``boundary="none"``), so every filter sees the same edge and applies its own edge mode,
exactly as on the whole volume.

Intensities are normalised per channel with percentiles of the *whole movie* (all timepoints),
computed in a streaming pass (:func:`channel_stats`). Integer data of up to 16 bits use an exact
histogram of every value, so the percentiles equal ``numpy.percentile`` of the whole channel;
other data use a 65536-bin histogram between the channel's minimum and maximum (error at most
1/65536 of the range). Histograms are summed over chunks, so the result does not depend on the
chunking. Normalisation is affine and is applied *before* the filters: Gaussian smoothing and the
background filters commute with it, and it makes the non-local-means cut-off ``h`` a fraction
of the channel's intensity range whatever the camera.

:func:`preprocess_movie` is the stage's entry point on OME-Zarr paths: drift estimation
(:mod:`cellspot.register`) on the registration channel, then normalise + filter + shift for every
channel in one chunked pass (:func:`process_channel_dask`: each chunk reads a slab with the
filter halo plus the shift halo), written as a float32 OME-Zarr, plus the drift table and plot.
"""

from ..errors import PreprocessError
from .filters import (
    ChannelSettings,
    GaussianFilter,
    NLMeansFilter,
    PercentileNorm,
    RollingBallFilter,
    TopHatFilter,
    apply_filters,
    ellipsoid_footprint,
    filter_dask,
    filter_halo,
    gaussian_smooth,
    nl_means,
    rolling_ball,
    white_tophat,
)
from .intensity import (
    ChannelStats,
    blank_timepoints,
    channel_stats,
    normalization_params,
    normalize_block,
    preprocess_channel,
    process_channel_dask,
    warn_bad_values,
)
from .run import (
    PreprocessSettings,
    check_channels,
    dask_scheduler,
    limit_heap_growth,
    main,
    preprocess_from_config,
    preprocess_movie,
)

__all__ = [
    "ChannelSettings",
    "ChannelStats",
    "GaussianFilter",
    "NLMeansFilter",
    "PercentileNorm",
    "PreprocessError",
    "PreprocessSettings",
    "RollingBallFilter",
    "TopHatFilter",
    "apply_filters",
    "blank_timepoints",
    "channel_stats",
    "check_channels",
    "dask_scheduler",
    "ellipsoid_footprint",
    "filter_dask",
    "filter_halo",
    "gaussian_smooth",
    "limit_heap_growth",
    "main",
    "nl_means",
    "normalization_params",
    "normalize_block",
    "preprocess_channel",
    "preprocess_from_config",
    "preprocess_movie",
    "process_channel_dask",
    "rolling_ball",
    "warn_bad_values",
    "white_tophat",
]
