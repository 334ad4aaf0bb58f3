"""Records: one JSON file per cell, the only thing downstream stages read.

A record is written atomically (temporary file + rename), so a reader never sees a truncated record even if
the writer is killed. Every record, whatever its status, carries the key and the environment, so a failed
or unavailable cell is as visible in the tables and the report as a measured one.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

SCHEMA_VERSION = 2  # 2: timing in rounds (timing.rounds, session), gpu_busy
STATUSES = ("ok", "failed", "unavailable", "unsupported")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_record(key: dict, options: dict, log: str | None) -> dict:
    """A record with every section present (empty) so that readers need no special cases."""
    return {
        "schema_version": SCHEMA_VERSION,
        "key": dict(key),
        "options": dict(options),
        "status": None,
        "reason": None,
        "log": log,
        "timing": None,
        "gpu_busy": None,
        "throughput": None,
        "accuracy": None,
        "prepare": {},
        "memory": {"peak_bytes": None},
        "device": {},
        "env": {},
        "cost": {},
        "retry": False,
        "retry_why": None,
        "started_at": now(),
        "finished_at": None,
    }


ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def one_line(text: str, limit: int = 300) -> str:
    """Reasons are one line: the first non-empty line, without terminal colour codes, shortened."""
    for line in ANSI.sub("", str(text)).splitlines():
        if line.strip():
            line = " ".join(line.split())
            return line if len(line) <= limit else line[: limit - 3] + "..."
    return ""


# Failures of the machine, not answers of the cell: a full disk, memory exhausted, the process killed from
# outside (SIGKILL: the kernel's OOM killer; SIGTERM, SIGHUP, SIGINT). A crash of the engine (SIGSEGV,
# SIGABRT) or a cell past cell_timeout_s ("timed out", killed by the session itself) is the cell's answer.
ENVIRONMENTAL = (
    ("disk full", re.compile(r"No space left on device|\bENOSPC\b|\[Errno 28\]|Disk quota exceeded|\[Errno 122\]",
                             re.I)),
    ("out of memory", re.compile(r"\bMemoryError\b|OutOfMemoryError|out of memory|Cannot allocate memory|"
                                 r"\[Errno 12\]|std::bad_alloc|Failed to allocate memory", re.I)),
    ("killed", re.compile(r"exited with (-9|137|-15|143|-1|129|-2|130)\b|killed by signal (9|15|1|2)\b|SIGKILL")),
)


def environmental(reason: str | None) -> str | None:
    """Why a failure was the machine's (disk full, out of memory, killed), or None: the cell's own answer."""
    for kind, pattern in ENVIRONMENTAL:
        if reason and pattern.search(reason):
            return kind
    return None


def finish(record: dict, status: str, reason: str | None = None) -> dict:
    """Close a record with its status and one-line reason. A failure of the machine (``environmental``) is
    not the cell's answer: the record says ``retry: true`` and why, and ``python3 -m scripts.retry_failed``
    measures it again (docs/troubleshooting.md)."""
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}")
    if status != "ok" and not reason:
        raise ValueError(f"a {status} record needs a reason")
    record["status"] = status
    record["reason"] = one_line(reason) if reason else None
    kind = environmental(record["reason"]) if status == "failed" else None
    record["retry"], record["retry_why"] = kind is not None, kind
    record["finished_at"] = now()
    return record


def retry_notice(cells_dir: str | Path = "results/cells") -> str | None:
    """One line for the end of a run where cells failed for the machine's reasons, or None."""
    kinds: dict[str, int] = {}
    for path in Path(cells_dir).rglob("*.json"):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and record.get("retry"):
            kinds[record.get("retry_why") or "?"] = kinds.get(record.get("retry_why") or "?", 0) + 1
    if not kinds:
        return None
    what = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
    return (f"infbench: {sum(kinds.values())} cell(s) failed for reasons of the machine ({what}), not their answer: "
            "fix the cause, then run `python3 -m scripts.retry_failed -- <your snakemake arguments>` "
            "(docs/troubleshooting.md)")


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Readable like every other output (mkstemp creates its file 0600: a record nobody else could read).
FILE_MODE = 0o666 & ~_umask()


def write(record: dict, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "w") as handle:
            json.dump(_json_safe(record), handle, indent=1, allow_nan=False)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_all(pairs: list[tuple[dict, str | Path]]) -> None:
    """Write several records all or nothing: every one to a temporary file first (a full disk, a bad value
    leaves every record as it was), then each renamed over its record."""
    staged: list[tuple[str, Path]] = []
    try:
        for record, path in pairs:
            path = Path(path)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            staged.append((tmp, path))
            os.fchmod(fd, FILE_MODE)
            with os.fdopen(fd, "w") as handle:
                json.dump(_json_safe(record), handle, indent=1, allow_nan=False)
                handle.flush()
                os.fsync(handle.fileno())
    except BaseException:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)
        raise
    for tmp, path in staged:
        os.replace(tmp, path)


def read_all(directory: str | Path) -> list[tuple[Path, dict]]:
    """Every record under ``directory`` (recursively), in path order. A missing directory, one without
    records, or a file that is not a record is a ValueError whose one line names it (command-line tools
    print it and exit non-zero)."""
    root = Path(directory)
    if not root.is_dir():
        raise ValueError(f"{root}: no such directory (a results/cells directory?)")
    paths = sorted(root.rglob("*.json"))
    if not paths:
        raise ValueError(f"{root}: no records (*.json) in it")
    out = []
    for path in paths:
        try:
            record = read(path)
        except OSError as error:
            raise ValueError(f"{path}: unreadable ({type(error).__name__}: {one_line(str(error))})") from None
        if not isinstance(record.get("key"), dict) or not isinstance(record.get("status"), str):
            raise Unreadable(path, "not a record: no key or status")
        out.append((path, record))
    return out


class Unreadable(ValueError):
    """A record or bundle that is not a complete JSON object (truncated, overwritten): ``path`` names it."""

    def __init__(self, path, why: str):
        super().__init__(f"{path}: unreadable ({why})")
        self.path = Path(path)


def read(path: str | Path) -> dict:
    try:
        record = json.loads(Path(path).read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise Unreadable(path, f"{type(error).__name__}: {error}") from None
    if not isinstance(record, dict):
        raise Unreadable(path, f"a JSON {type(record).__name__}, not an object")
    if record.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"{path}: schema_version {record.get('schema_version')!r}, expected {SCHEMA_VERSION}")
    return record


def write_bundle(recs: list[dict], path: str | Path) -> None:
    """A shape job's output: every cell's record in one file, written atomically like a record; the
    workflow's cell_record rule splits it into one record per cell."""
    write({"schema_version": SCHEMA_VERSION, "records": recs}, path)


def read_bundle(path: str | Path) -> list[dict]:
    bundle = read(path)
    if not isinstance(bundle.get("records"), list):
        raise Unreadable(path, "no list of records")
    return bundle["records"]


def finish_timed(record: dict, problem: str | None, non_finite: str) -> dict:
    """A timed cell's status, whatever its workload: failed with its verification's problem (a fallback, a
    recompile), failed when its output is not finite (``non_finite`` says which output), else ok."""
    if problem:
        return finish(record, "failed", problem)
    if not (record.get("accuracy") or {}).get("finite", True):
        return finish(record, "failed", non_finite)
    return finish(record, "ok")


def shape_stem(key: dict) -> str:
    """The file stem of a cell's shape bundle and record: b{batch}_s{seq_len} (forward) or
    b{batch}_p{prompt_len}_n{new_tokens} (generation)."""
    if key.get("workload") == "generate":
        return f"b{key['batch']}_p{key['prompt_len']}_n{key['new_tokens']}"
    return f"b{key['batch']}_s{key['seq_len']}"


def print_notices(run_logs=()) -> None:
    """What to do next, on the screen and not only in a job's log: after a failed job, the last line of its log
    (a corrupt bundle or record says there to run Snakemake again); after any run, the cells that failed for
    reasons of the machine (disk full, out of memory, killed) and how to retry them (docs/troubleshooting.md).
    Called by the Snakefile's onsuccess / onerror with Snakemake's own run log."""
    failed_logs = []
    for run_log in run_logs or ():
        try:
            text = open(run_log).read()
        except OSError:
            continue
        failed_logs += re.findall(r"^\s+log: (.+?) \(check log file", text, re.M)
    for job_log in dict.fromkeys(path for logs in failed_logs for path in logs.split(", ")):
        try:
            lines = [line.strip() for line in open(job_log, errors="replace").read().splitlines() if line.strip()]
        except OSError:
            continue
        if lines:
            print(f"{job_log}: {lines[-1][:500]}", file=sys.stderr)
    notice = retry_notice()
    if notice:
        print(notice, file=sys.stderr)
