"""Command line: the report of a batch folder, or the table across batches.

    python -m cellspot.report batch results/demo [--name demo] [--config config/config.yaml]
    python -m cellspot.report summary results/*/tables/batch_summary.parquet -o results/summary
    python -m cellspot.report captions   (rewrite workflow/report/<figure>.rst from FIGURES)
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import yaml

from cellspot.errors import CellspotError
from cellspot.layout import in_summary
from cellspot.report.build import (
    ReportConfig,
    ReportInputs,
    ReportOutputs,
    make_report,
    summarise_batches,
    write_captions,
)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cellspot.report", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("batch", help="report of one batch folder (results/<batch>)")
    b.add_argument("batch_dir", type=Path)
    b.add_argument("--name", help="batch name shown in the report (default: folder name)")
    b.add_argument("--config", type=Path, help="workflow config YAML (keys report, channels)")
    s = sub.add_parser("summary", help="one table from several batch_summary files")
    s.add_argument("summaries", nargs="+", type=Path)
    s.add_argument("-o", "--outdir", type=Path, required=True)
    sub.add_parser("captions", help="write the --report captions of the figures")
    args = ap.parse_args(argv)
    if args.cmd == "captions":
        for path in write_captions():
            print(path)
        return 0
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.cmd == "batch":
            cfg = yaml.safe_load(args.config.read_text()) if args.config else {}
            out = ReportOutputs.from_batch_dir(args.batch_dir)
            make_report(ReportInputs.from_batch_dir(args.batch_dir), out,
                        ReportConfig(**(cfg.get("report") or {})), cfg.get("channels"),
                        batch=args.name or args.batch_dir.resolve().name)
            print(out.html)
        else:
            parquet = in_summary(args.outdir, "parquet")
            summarise_batches(args.summaries, parquet, in_summary(args.outdir, "csv"))
            print(parquet)
    except (CellspotError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
