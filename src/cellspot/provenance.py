"""What produced an output: code fingerprints for Snakemake re-run triggers, and run records."""

from __future__ import annotations

import hashlib
from pathlib import Path

from . import __version__

# The workflow's own packages: a rule's code is its script plus what it imports from these.
PACKAGES = ("cellspot", "cellspot_bench")
_SRC = Path(__file__).resolve().parents[1]


def _module_file(name: str) -> Path | None:
    """Source file of a module of :data:`PACKAGES` by dotted name (found without importing)."""
    if name.split(".")[0] not in PACKAGES:
        return None
    base = _SRC.joinpath(*name.split("."))
    for f in (base.with_suffix(".py"), base / "__init__.py"):
        if f.is_file():
            return f
    return None


def _imports(path: Path, name: str | None) -> set[str]:
    """Modules of :data:`PACKAGES` that a source file imports (anywhere in it, relative
    imports resolved; ``from pkg import mod`` counts ``pkg.mod`` when that is a module)."""
    import ast

    package = None
    if name is not None:
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                if package is None:
                    continue
                parts = package.split(".")
                parts = parts[:len(parts) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    out = set()
    for mod in found:  # a module runs its parent packages' __init__ first
        parts = mod.split(".")
        out |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    return {m for m in out if _module_file(m) is not None}


def imported_modules(entry: str | Path, ignore: tuple[str, ...] = ()) -> list[str]:
    """Every module of :data:`PACKAGES` that ``entry`` (a dotted module name, or the path of a
    rule's script) imports, directly or through other modules, in sorted order.

    Read from the source with :mod:`ast` (nothing is imported). Modules named in ``ignore``
    (and their submodules) are left out and not followed.
    """
    def ignored(m):
        return any(m == i or m.startswith(i + ".") for i in ignore)

    if isinstance(entry, Path) or str(entry).endswith(".py"):
        todo, seen = sorted(_imports(Path(entry), None)), set()
    else:
        todo, seen = [str(entry)], set()
        if _module_file(str(entry)) is None:
            raise ValueError(f"no module {entry} in {_SRC}")
    while todo:
        m = todo.pop()
        if m in seen or ignored(m):
            continue
        seen.add(m)
        todo += sorted(_imports(_module_file(m), m) - seen)
    return sorted(seen)


def code_fingerprint(*entries: str | Path, ignore: tuple[str, ...] = ()) -> str:
    """Short SHA-256 of the source of the package modules that ``entries`` use.

    Each entry is a rule's script (path) or a module name; the fingerprint covers every module
    of :data:`PACKAGES` they import, directly or not (:func:`imported_modules`), except those
    in ``ignore`` -- the explicit list of code that may change without re-running the rule.
    Used as a rule ``params:`` value so that Snakemake's ``params`` trigger re-runs a stage when
    the package code it runs changes, not only when its script changes.
    """
    h = hashlib.sha256()
    names = sorted({m for e in entries for m in imported_modules(e, ignore)})
    for name in names:
        h.update(name.encode())
        h.update(_module_file(name).read_bytes())
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
