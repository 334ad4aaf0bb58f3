"""Rule device_peaks: the device's peak matmul FLOP/s per precision and its copy bandwidth (infbench.roofline).

Never fails the run: where the device is missing or the measurement fails or outlasts its bound, peaks.json
says so (status 'failed' and a one-line reason) and the roofline is left without a floor, with that reason.
"""

import argparse
import json
import logging
import signal
import traceback
from pathlib import Path

from infbench import devices, records, roofline
from infbench.measure.timing import TimingPolicy

# Five timed windows (matmul per precision, copy), each at most warm-up + budget plus its slowest iteration.
WINDOWS = 5
SLACK_S = 120

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--device", required=True)
parser.add_argument("--timing", required=True, help="the timing policy as JSON")
parser.add_argument("--threads", type=int, required=True)
parser.add_argument("--out", required=True)
args = parser.parse_args()
logging.basicConfig(level=logging.INFO)
timing = json.loads(args.timing)


class TooLong(Exception):
    pass


def bound_s(policy: dict) -> int:
    """How long the job may take: every window's warm-up and budget, with slack for the first calls."""
    return int(WINDOWS * (float(policy.get("warmup_s", 0.5)) + float(policy.get("budget_s", 5.0))) + SLACK_S)


def too_long(signum, frame):
    raise TooLong(f"device peaks did not finish within {bound_s(timing)} s")


with devices.placed(args.device) as gpu, devices.host_exclusive(args.device):  # timing: never beside other work
    signal.signal(signal.SIGALRM, too_long)
    signal.alarm(bound_s(timing))
    try:
        if args.device == "cuda" and not devices.count():
            raise RuntimeError("no CUDA device on this machine (device: cuda)")
        peaks = roofline.measure_peaks(args.device, args.threads, TimingPolicy.from_config(timing))
        status, reason = "ok", None
    except Exception as error:  # noqa: BLE001 - no peaks is a missing roofline, never a missing report
        traceback.print_exc()
        status, reason = "failed", f"{type(error).__name__}: {records.one_line(str(error))}"
        peaks = {"device": args.device, "matmul_flops_per_s": {}, "copy_bytes_per_s": None, "timing": {}}
    finally:
        signal.alarm(0)
    peaks.update(gpu=gpu, status=status, reason=reason)
records.write(peaks, Path(args.out))
logging.info("peaks: %s", json.dumps({k: peaks[k] for k in ("status", "reason", "matmul_flops_per_s", "copy_bytes_per_s")}))
