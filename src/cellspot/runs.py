"""Snakemake runs alive in a working folder (on this host), so that a stale lock is told from a
live one: ``snakemake --unlock`` under a live run makes two runs process the same batches."""

from __future__ import annotations

import os
from pathlib import Path


def is_snakemake(argv: list[str]) -> bool:
    """Whether a command line runs Snakemake: ``snakemake ...``, ``python .../bin/snakemake ...``
    (a console script, as the kernel shows it) or ``python -m snakemake ...``."""
    if not argv:
        return False
    if Path(argv[0]).name == "snakemake":
        return True
    if not Path(argv[0]).name.startswith("python"):
        return False
    # the first argument that is not an option: the script, or the module after -m
    script = next((a for a in argv[1:] if not a.startswith("-")), "")
    return Path(script).name == "snakemake" or script.endswith("snakemake/__main__.py")


def live_runs(workdir: str | os.PathLike = ".", proc: str | os.PathLike = "/proc") -> list[int]:
    """PIDs of Snakemake processes whose working folder is ``workdir`` (Snakemake changes into
    its ``-d`` folder, so this finds runs started from anywhere). Only this host is seen."""
    target = Path(workdir).resolve()
    found = []
    for entry in Path(proc).iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if Path(os.readlink(entry / "cwd")).resolve() != target:
                continue
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:  # gone, or not ours to read
            continue
        if is_snakemake([a for a in argv if a]):
            found.append(int(entry.name))
    return sorted(found)
