"""Rule bench: time one cell (model, backend, precision, batch, seq_len) and write its record.

Always writes a record and exits 0 for a cell that failed to measure: the failure is data (status + reason),
and the rest of the matrix, the tables and the report still complete.
"""

import time

PROCESS_START = time.perf_counter()  # before the imports: the cell's overhead includes them

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
from pathlib import Path  # noqa: E402

from infbench import cell, records  # noqa: E402
from infbench.timing import TimingPolicy  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--cell", required=True, help="key, options, device, timing, tolerance as JSON")
parser.add_argument("--manifest", required=True, help="the model's manifest.json (its directory holds the weights)")
parser.add_argument("--reference", required=True)
parser.add_argument("--graph", default=None)
parser.add_argument("--threads", type=int, required=True)
parser.add_argument("--log", default=None, help="this job's log path, stored in the record")
parser.add_argument("--out", required=True)
args = parser.parse_args()
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
params = json.loads(args.cell)
spec = cell.CellSpec(
    key=params["key"],
    options=params["options"],
    model_dir=Path(args.manifest).parent,
    graph_path=Path(args.graph) if args.graph else None,
    reference=Path(args.reference),
    device=params["device"],
    threads=args.threads,
    policy=TimingPolicy.from_config(params["timing"]),
    tolerance=params["tolerance"],
    log_path=args.log,
    process_start=PROCESS_START,
)
record = cell.run(spec)
records.write(record, args.out)
logging.info("%s %s", record["status"], record["reason"] or "")
