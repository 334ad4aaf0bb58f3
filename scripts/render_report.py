"""Rule report: tables + figures + config → one self-contained HTML file."""

import argparse
import json
import logging
from pathlib import Path

from infbench import config as config_io
from infbench import figures, report, tables
from infbench.workloads.generate import tables as generation_tables

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--tables-dir", required=True)
parser.add_argument("--figures-dir", required=True)
source = parser.add_mutually_exclusive_group(required=True)
source.add_argument("--config", help="the validated config as JSON (what the report rule passes)")
source.add_argument("--config-file", help="a config file, validated here (re-rendering a published run)")
parser.add_argument("--out", required=True)
parser.add_argument("--evidence", default=None, help="a link to this run's reproducibility evidence (named in the answer)")
args = parser.parse_args()
logging.basicConfig(level=logging.INFO)
figure_paths = {name: Path(args.figures_dir) / filename for name, filename in figures.FIGURES.items()}
config = json.loads(args.config) if args.config else config_io.load(args.config_file)
frames = {**tables.read_all(args.tables_dir), **(generation_tables.read_all(args.tables_dir) or {})}
html = report.render(frames, figure_paths, config, args.out,
                     args.evidence or None)
logging.info("report: %s (%d bytes)", args.out, len(html.encode()))
