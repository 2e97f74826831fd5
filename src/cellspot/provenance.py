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


def config_files(path: str | Path) -> list[Path]:
    """A Python (MMEngine) config file and the ``_base_`` files it inherits, recursively.

    The workflow makes all of them inputs of training, so that editing a base config re-runs
    it. Read with :mod:`ast` (no mmengine import); a missing file is returned as is, for the
    caller to report.
    """
    import ast

    out: list[Path] = []
    todo = [Path(path)]
    while todo:  # depth-first, each file once (a cycle ends)
        path = todo.pop(0)
        if path in out:
            continue
        out.append(path)
        if not path.is_file():
            continue
        bases = []
        for node in ast.parse(path.read_text()).body:
            if (isinstance(node, ast.Assign) and len(node.targets) == 1
                    and isinstance(node.targets[0], ast.Name) and node.targets[0].id == "_base_"):
                b = ast.literal_eval(node.value)
                bases += [b] if isinstance(b, str) else list(b)
        todo[:0] = [path.parent / b for b in bases]
    return out


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


def file_digest(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def package_versions(names=("numpy", "scipy", "scikit-image", "dask", "zarr", "tifffile",
                            "torch", "mmcv", "mmdet", "mmengine", "btrack", "snakemake",
                            "pandas")) -> dict:
    """Installed versions of the packages that shape the results (None if absent)."""
    from importlib import metadata

    out = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = None
    return out


def provenance_record(batch: str, movie: str | Path, config: dict,
                      checkpoints: dict[str, str | Path]) -> dict:
    """What produced a batch's results: workflow version, resolved config, input, models, software.

    The movie is identified by path, size and modification time (hashing a large movie would cost
    as much as ingesting it); model checkpoints by SHA-256.
    """
    import datetime
    import platform

    movie = Path(movie)
    st = movie.stat()
    return {
        "batch": batch,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "workflow_version": workflow_version(),
        "input": {"path": str(movie.resolve()), "bytes": st.st_size,
                  "modified": datetime.datetime.fromtimestamp(
                      st.st_mtime, datetime.timezone.utc).isoformat(timespec="seconds")},
        "checkpoints": {name: {"path": str(Path(p).resolve()), "sha256": file_digest(p)}
                        for name, p in checkpoints.items()},
        "config": config,
        "software": {"python": platform.python_version(), **package_versions()},
        "host": platform.node(),
    }
