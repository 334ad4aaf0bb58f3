"""Rule report: tables + figures + config → one self-contained HTML file."""

import argparse
import json
import logging
from pathlib import Path

from infbench import figures, report, tables

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--tables-dir", required=True)
parser.add_argument("--figures-dir", required=True)
parser.add_argument("--config", required=True, help="the validated config as JSON")
parser.add_argument("--out", required=True)
parser.add_argument("--evidence", default=None, help="a link to this run's reproducibility evidence (named in the answer)")
args = parser.parse_args()
logging.basicConfig(level=logging.INFO)
figure_paths = {name: Path(args.figures_dir) / filename for name, filename in figures.FIGURES.items()}
html = report.render(tables.read_all(args.tables_dir), figure_paths, json.loads(args.config), args.out,
                     args.evidence or None)
logging.info("report: %s (%d bytes)", args.out, len(html.encode()))
