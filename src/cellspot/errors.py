"""Errors for bad input: each names the file or setting and the problem, for a one-line log.

Every problem a user can fix is a :class:`CellspotError`; the Snakemake adapter
(:func:`cellspot.smk.run_step`) and the command line print it as one line, without a traceback.
"""


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


class PreprocessError(CellspotError):
    """The movie or the settings do not allow preprocessing (e.g. a channel is absent)."""


class CocoError(CellspotError):
    """A COCO file or an annotation volume is missing, malformed or inconsistent."""


class TrackError(CellspotError):
    """A btrack configuration, an object table or a label image does not allow tracking."""


class CTCError(CellspotError):
    """A Cell Tracking Challenge folder or table is missing or inconsistent."""


class ReportInputError(CellspotError):
    """An input table lacks what the report needs."""


def read_json_file(path, error: type[CellspotError], what: str):
    """The JSON document in ``path``; a missing file or invalid JSON raises ``error`` with one
    line naming the file (``what``: e.g. "COCO file")."""
    import json
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: no such {what}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise error(f"{path}: not valid JSON ({exc})") from exc
