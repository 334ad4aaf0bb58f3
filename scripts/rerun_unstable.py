"""Re-measure the cells flagged unstable (CV above stability.max_cv, or a GPU clock that moved): the shape
jobs holding them are forced to rerun (a shape's cells are measured together, in paired rounds), and
aggregate / figures / report follow.

    python3 -m scripts.rerun_unstable [--list] [-- snakemake arguments, e.g. --configfile config/gpu.yaml]

A record that cannot be read, or a missing results directory, is one line naming it (exit status 1).
"""

import argparse
import subprocess
import sys
from pathlib import Path

from infbench import records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default="results", help="the results directory (default: results)")
    parser.add_argument("--list", action="store_true", help="only print the unstable records")
    parser.add_argument("snakemake_args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    try:
        found = records.read_all(Path(args.results, "cells"))
    except ValueError as error:
        raise SystemExit(f"rerun_unstable: {error}") from None
    unstable = []
    for path, record in found:
        if (record.get("stability") or {}).get("unstable"):
            key = record["key"]
            shape = str(Path(args.results, "shapes", key["model"], f"{records.shape_stem(key)}.json"))
            if shape not in unstable:
                unstable.append(shape)
            print(f"{path}: {record['stability'].get('why')}")
    if not unstable:
        print("no unstable cells")
        sys.exit(0)
    if args.list:
        sys.exit(0)
    extra = [a for a in args.snakemake_args if a != "--"]
    sys.exit(subprocess.call(["snakemake", *extra, "--forcerun", *unstable]))


if __name__ == "__main__":
    main()
