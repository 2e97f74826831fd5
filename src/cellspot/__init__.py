"""cellspot: 3D time-lapse microscopy of cells and their RNA, from TIFF to statistics."""

__version__ = "0.1.0"
