"""Command-line interface.

``cellspot simulate | ingest | preprocess | merge | report | batches | status | runs | demo``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import subprocess
import sys
from pathlib import Path

from . import __version__
from .layout import RESULTS, batch_file

REPO = Path(__file__).resolve().parents[2]
DEMO_MOVIE = Path("demo/input/movie.ome.tif")
DEMO_SEED = 0


def _floats(n):
    def parse(s):
        v = tuple(float(x) for x in s.split(","))
        if len(v) != n:
            raise argparse.ArgumentTypeError(f"expected {n} comma-separated numbers, got {s!r}")
        return v
    return parse


def _ints(n):
    def parse(s):
        return tuple(int(x) for x in _floats(n)(s))
    return parse


def cmd_simulate(args) -> int:
    from .simulate import SimulationConfig, simulate_movie, write_simulation

    fields = {k: getattr(args, k) for k in ("n_timepoints", "shape", "n_cells", "n_divisions",
                                            "voxel_size", "time_interval")
              if getattr(args, k) is not None}
    movie = simulate_movie(SimulationConfig(**fields), seed=args.seed)
    tif = write_simulation(movie, args.output)
    logging.info("wrote %s (TCZYX %s) and its ground truth in %s", tif, movie.image.shape,
                 Path(args.output) / "truth")
    return 0


def cmd_ingest(args) -> int:
    from .ingest import ingest_movie

    summary = ingest_movie(args.input, args.output, axes=args.axes,
                           channel_names=tuple(args.channels.split(",")) if args.channels else None,
                           voxel_size=args.voxel_size, time_interval=args.time_interval,
                           z_block=args.z_block, overwrite=args.overwrite)
    print(json.dumps(summary, indent=2))
    return 0


def cmd_batches(args) -> int:
    plan = _config_batches(args.configfile)
    for name, b in plan.batches.items():
        print(f"{name}\t{b.path}")
    for name, why in plan.rejected.items():
        logging.warning("batch %s skipped: %s", name, why)
    return 0


def _config_batches(configfile: str) -> dict:
    import yaml

    from .batches import discover_batches

    cfg = yaml.safe_load(Path(configfile).read_text())
    return discover_batches(cfg.get("samples") or None, cfg.get("inbox") or None,
                            cfg.get("inbox_marker", ""))


def cmd_status(args) -> int:
    from .omezarr import write_text_atomic
    from .status import status_table

    plan = _config_batches(args.configfile)
    table = status_table(sorted(plan.batches), args.results, plan.rejected)
    text = table.to_csv(sep="\t", index=False)
    if args.output:
        write_text_atomic(args.output, text)
    print(text, end="")
    return 0 if (table.state == "complete").all() else 1


def cmd_runs(args) -> int:
    """Print the PIDs of Snakemake runs alive in the folder (this host); 0 if none, else 1."""
    from .runs import live_runs

    pids = live_runs(args.directory)
    for pid in pids:
        print(pid)
    return 1 if pids else 0


def cmd_demo(args) -> int:
    """Simulate the default movie (seeded) if absent, then run the workflow on it."""
    from .errors import InputError
    from .simulate import simulate_movie, write_simulation

    where = Path(args.directory)
    if not (where / "Snakefile").is_file() or not (where / "config" / "demo.yaml").is_file():
        raise InputError(f"{where}: not a cellspot workflow folder (it needs Snakefile and "
                         "config/demo.yaml); --directory names a checkout of cellspot")
    os.chdir(where)
    if not DEMO_MOVIE.exists():
        logging.info("simulating the demo movie (seed %d) -> %s", DEMO_SEED, DEMO_MOVIE)
        write_simulation(simulate_movie(seed=DEMO_SEED), DEMO_MOVIE.parent)
    cmd = [sys.executable, "-m", "snakemake", "--profile", args.profile,
           "--configfile", "config/demo.yaml", *args.snakemake_args]
    logging.info("running: %s", shlex.join(cmd))
    rc = subprocess.call(cmd)
    check = Path(batch_file("truth_json", batch="demo"))
    if rc == 0 and check.is_file():
        from .report.build import truth_headline

        logging.info("the demo against the simulation's truth (%s):", check)
        for k, v in truth_headline(check).items():
            logging.info("  %s: %s", k, v)
        logging.info("report: %s", Path(batch_file("report_html", batch="demo")).resolve())
    return rc


# Stages with a command line of their own: `cellspot <stage> ...` runs `python -m cellspot.<stage>`.
STAGE_COMMANDS = {
    "preprocess": ("cellspot.preprocess", "denoise, normalise and drift-correct an OME-Zarr"),
    "merge": ("cellspot.merge", "stitch per-slice instances into 3D labels and tables"),
    "report": ("cellspot.report.__main__", "statistics, figures and the HTML report of a batch"),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cellspot", description=__doc__)
    p.add_argument("--version", action="version", version=f"cellspot {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("simulate", help="write a synthetic movie (OME-TIFF) and its ground truth")
    s.add_argument("output", help="folder to write movie.ome.tif and truth/ into")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--timepoints", dest="n_timepoints", type=int)
    s.add_argument("--shape", type=_ints(3), help="Z,Y,X in pixels")
    s.add_argument("--cells", dest="n_cells", type=int)
    s.add_argument("--divisions", dest="n_divisions", type=int)
    s.add_argument("--voxel-size", type=_floats(3), help="z,y,x in µm")
    s.add_argument("--time-interval", type=float, help="seconds")
    s.set_defaults(func=cmd_simulate)

    s = sub.add_parser("ingest", help="convert a TIFF/OME-TIFF movie into OME-Zarr")
    s.add_argument("input")
    s.add_argument("output")
    s.add_argument("--axes", help="axes of a file that does not state them (e.g. TZYX)")
    s.add_argument("--channels", help="comma-separated channel names")
    s.add_argument("--voxel-size", type=_floats(3), help="z,y,x in µm")
    s.add_argument("--time-interval", type=float, help="seconds")
    s.add_argument("--z-block", type=int, help="z-slices per chunk")
    s.add_argument("--overwrite", action="store_true",
                   help="replace an existing OME-Zarr image at OUTPUT (never another folder)")
    s.set_defaults(func=cmd_ingest)

    s = sub.add_parser("batches", help="list the batches the workflow would process")
    s.add_argument("--configfile", default="config/config.yaml")
    s.set_defaults(func=cmd_batches)

    s = sub.add_parser("status", help="which stages each batch has done, what failed and why")
    s.add_argument("--configfile", default="config/config.yaml")
    s.add_argument("--results", default=RESULTS)
    s.add_argument("--output", help="also write the table (TSV) here")
    s.set_defaults(func=cmd_status)

    s = sub.add_parser("runs", help="Snakemake runs alive in a workflow folder (this host); "
                       "exit 1 if any")
    s.add_argument("--directory", default=".")
    s.set_defaults(func=cmd_runs)

    for name, (_, text) in STAGE_COMMANDS.items():
        s = sub.add_parser(name, help=f"{text} (see `cellspot {name} --help`)", add_help=False)
        s.add_argument("args", nargs=argparse.REMAINDER)
        s.set_defaults(func=None, stage=name)

    s = sub.add_parser("demo", help="simulate the default movie and run the workflow on it")
    s.add_argument("--directory", default=str(REPO), help="workflow folder (default: this repo)")
    s.add_argument("--profile", default="profiles/local")
    s.add_argument("snakemake_args", nargs=argparse.REMAINDER,
                   help="further snakemake arguments (e.g. --cores 2 -n)")
    s.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in STAGE_COMMANDS:
        import importlib

        module = importlib.import_module(STAGE_COMMANDS[argv[0]][0])
        return int(module.main(argv[1:]) or 0)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    from .errors import CellspotError
    try:
        return args.func(args)
    except CellspotError as exc:
        logging.error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
