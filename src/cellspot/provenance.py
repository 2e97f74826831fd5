"""What produced an output: code fingerprints for Snakemake re-run triggers, and run records."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

from . import __version__


def code_fingerprint(*modules: str) -> str:
    """Short SHA-256 of the source of ``cellspot`` modules (e.g. ``"ingest", "omezarr"``).

    Used as a rule ``params:`` value so that Snakemake's ``params`` trigger re-runs a stage when
    the package code it calls changes, not only when its script changes.
    """
    h = hashlib.sha256()
    for name in sorted(modules):
        spec = importlib.util.find_spec(f"cellspot.{name}")
        if spec is None or spec.origin is None:
            raise ValueError(f"no module cellspot.{name}")
        h.update(name.encode())
        h.update(Path(spec.origin).read_bytes())
    return h.hexdigest()[:16]


def workflow_version() -> str:
    """The package version, plus the git commit when run from a checkout."""
    root = Path(__file__).resolve().parents[2]
    head = root / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            ref = (root / ".git" / ref[5:]).read_text().strip()
        return f"{__version__}+g{ref[:10]}"
    except OSError:
        return __version__
