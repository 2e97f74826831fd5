"""Errors for bad input: each names the file or setting and the problem, for a one-line log."""


class CellspotError(ValueError):
    """Base class of the problems a user can fix in their data or configuration."""


class InputError(CellspotError):
    """An input movie is missing, unreadable, corrupt or does not fit its declared axes."""


class OmeZarrError(CellspotError):
    """An OME-Zarr store is missing, unreadable or not what a stage expects."""


class BatchError(CellspotError):
    """The samples sheet or the inbox does not describe valid batches."""


class SegmentError(CellspotError):
    """A model, checkpoint or configuration problem of the segmentation stage."""


class RegistrationError(CellspotError):
    """Drift estimation cannot run on the movie, or its drift table is unreadable."""
