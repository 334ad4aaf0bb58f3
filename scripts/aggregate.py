"""Rule aggregate: every record (+ the device's peaks and the models' counted FLOPs) → tidy CSV tables.

A model's FLOP counts are read from the sidecars beside its references (see infbench.roofline.model_work);
a model whose counts cannot be read loses its roofline rows with a warning, never the tables. Peaks that
failed to measure (their reason is in peaks.json) leave the roofline without a floor, never the tables.

A record that cannot be read (truncated, overwritten) is named and recovered: re-split from its shape's
bundle where that is intact (the run goes on), else removed with the bundle and the stale report, and the
job fails with one line saying to run Snakemake again (which re-measures that shape).
"""

import argparse
import json
import logging
from pathlib import Path

from infbench import records, roofline, tables

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--baseline", required=True, help="baseline entry as JSON")
parser.add_argument("--out-dir", required=True)
parser.add_argument("--peaks", default=None, help="results/device/peaks.json (for the roofline)")
parser.add_argument("--manifests", nargs="*", default=[], help="models' manifest.json (for the roofline)")
parser.add_argument("--work", nargs="*", default=None,
                    help="the reference jobs' FLOP counts (results/reference/<model>/*.json); default: found beside "
                         "each manifest's results tree")
parser.add_argument("--mix-environments", action="store_true", help="keep unlike environments apart, not refused")
parser.add_argument("--practical-margin", type=float, default=0.0,
                    help="a lead below this fraction is a tie (config aggregate.practical_margin)")
parser.add_argument("--stale", nargs="*", default=[], help="outputs downstream of the tables (the report): removed "
                    "when a corrupt record stops this job, so that the next run cannot skip them")
parser.add_argument("--records", nargs="*", default=[], help="every forward cell's record (none in a run that only generates)")
args = parser.parse_args()
logging.basicConfig(level=logging.INFO)

def read_peaks(path: str | None) -> dict | None:
    if not path:
        return None
    try:
        peaks = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        logging.warning("roofline: unreadable peaks %s (%s)", path, error)
        return None
    if peaks.get("status") == "failed":
        logging.warning("roofline: no device peaks: %s", peaks.get("reason"))
    return peaks


def bundle_of(record: Path) -> Path:
    """results/cells/<model>/<backend>/<precision>/b<b>_s<s>.json → results/shapes/<model>/b<b>_s<s>.json"""
    return record.parents[4] / "shapes" / record.parents[2].name / record.name


def recover(corrupt: list[Path]) -> list[Path]:
    """Re-split each corrupt record from its intact bundle; return those that cannot be (bundle bad too)."""
    lost = []
    for path in corrupt:
        bundle = bundle_of(path)
        try:
            matches = [r for r in records.read_bundle(bundle)
                       if (r["key"]["backend"], r["key"]["precision"]) == (path.parent.parent.name, path.parent.name)]
        except (OSError, ValueError, KeyError, TypeError) as error:
            logging.error("%s: its bundle %s cannot be read either (%s)", path, bundle, error)
            matches = []
        if len(matches) == 1:
            records.write(matches[0], path)
            logging.warning("%s: unreadable record re-split from its intact bundle %s", path, bundle)
        else:
            lost.append(path)
    return lost


def load_records(paths: list[str]) -> list[dict]:
    try:
        return tables.load(paths)
    except tables.CorruptRecords as error:
        logging.error("corrupt records: %s", error)
        lost = recover(error.paths)
    if not lost:
        return tables.load(paths)
    for path in lost:
        path.unlink(missing_ok=True)
        bundle_of(path).unlink(missing_ok=True)
    for stale in args.stale:
        Path(stale).unlink(missing_ok=True)
    names = ", ".join(map(str, lost))
    raise SystemExit(f"aggregate: corrupt record(s) {names} (and their shape bundles) removed: run snakemake "
                     "again to re-measure their shapes")


peaks = read_peaks(args.peaks)


def counted(work: str) -> bool:
    """A reference job that failed counted nothing: its shape has no roofline row (its cells say why)."""
    try:
        return json.loads(Path(work).read_text()).get("status") != "failed"
    except (OSError, ValueError, AttributeError):
        return True  # model_work names what is wrong with it


def model_work(manifest: str) -> dict | None:
    model = Path(manifest).parent.name
    paths = None if args.work is None else [p for p in args.work if Path(p).parent.name == model and counted(p)]
    try:
        return roofline.model_work(Path(manifest), paths)
    except (OSError, ValueError, KeyError, TypeError) as error:
        logging.warning("roofline: no counted work for %s (%s: %s)", model, type(error).__name__, error)
        return None


geometries = {Path(m).parent.name: work for m in args.manifests if (work := model_work(m)) is not None}
try:
    load_records(args.records)  # names, recovers or removes unreadable records before the tables read them
    frames = tables.write_all(args.records, json.loads(args.baseline), args.out_dir, peaks, geometries,
                              args.mix_environments, args.practical_margin)
except tables.MixedEnvironments as error:
    raise SystemExit(f"aggregate: {error}") from None
logging.info("tables: %s", {name: len(frame) for name, frame in frames.items()})
