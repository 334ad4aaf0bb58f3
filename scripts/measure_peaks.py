"""Rule device_peaks: the device's peak matmul FLOP/s per precision and its copy bandwidth (infbench.roofline)."""

import argparse
import json
import logging
from pathlib import Path

from infbench import devices, records, roofline
from infbench.measure.timing import TimingPolicy

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--device", required=True)
parser.add_argument("--timing", required=True, help="the timing policy as JSON")
parser.add_argument("--threads", type=int, required=True)
parser.add_argument("--out", required=True)
args = parser.parse_args()
logging.basicConfig(level=logging.INFO)
with devices.leased(args.device == "cuda") as gpu:  # one GPU, never beside a cell
    peaks = roofline.measure_peaks(args.device, args.threads, TimingPolicy.from_config(json.loads(args.timing)))
    peaks["gpu"] = gpu
records.write(peaks, Path(args.out))
logging.info("peaks: %s", json.dumps({k: peaks[k] for k in ("matmul_flops_per_s", "copy_bytes_per_s")}))
