"""The results file: one JSON line per input, each written whole, and what --resume makes of it.

A line goes out in one os.write of the complete line on an O_APPEND descriptor, so a kill leaves at
worst a last line cut short, never two lines mixed. Lines reach the kernel at once (a killed client
loses nothing it has written); fsync runs once a second and at the end, so a machine crash loses at
most the last second, while the run is not slowed to the disk's sync rate.

--resume keeps the "ok" lines, drops failed lines and a torn last line (rewriting the file through a
temporary copy and a rename, so a kill during the rewrite loses nothing) and tells which ids are done.
"""

import errno
import json
import os
import time
from typing import Any, Dict, Optional, Set

from .inputs import UsageError, id_hash

FSYNC_INTERVAL = 1.0


def _ok_line(line: bytes) -> Optional[str]:
    """The input id of a complete ok line, else None."""
    try:
        record = json.loads(line.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(record, dict) and record.get("status") == "ok" and isinstance(record.get("input"), str):
        return record["input"]
    return None


def compact_for_resume(path: str) -> Set[int]:
    """Keep only the ok lines of a results file (one per input); the hashes of their ids."""
    done: Set[int] = set()
    dropped = False
    temporary = path + ".resume-tmp"
    with open(path, "rb") as source, open(temporary, "wb") as target:
        for line in source:
            input_id = _ok_line(line) if line.endswith(b"\n") else None
            key = id_hash(input_id) if input_id is not None else None
            if key is None or key in done:
                dropped = True
                continue
            done.add(key)
            target.write(line)
        target.flush()
        os.fsync(target.fileno())
    if dropped:
        os.replace(temporary, path)
    else:
        os.unlink(temporary)
    return done


class ResultsWriter(object):
    def __init__(self, path: str, resume: bool):
        self.path = path
        self.done: Set[int] = set()
        exists = os.path.exists(path) and os.path.getsize(path) > 0
        if exists and not resume:
            raise UsageError("%s already holds results: add --resume to finish that run, or choose another -o"
                             % path)
        if exists:
            self.done = compact_for_resume(path)
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        try:
            self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as error:
            raise UsageError("cannot write %s: %s" % (path, error.strerror or error))
        self.last_sync = time.monotonic()

    def is_done(self, input_id: str) -> bool:
        return id_hash(input_id) in self.done

    def write(self, record: Dict[str, Any]) -> None:
        try:
            data = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        except UnicodeEncodeError:  # a file name that is not UTF-8 (surrogate escapes): JSON's \u escapes
            data = (json.dumps(record) + "\n").encode("ascii")
        try:
            written = os.write(self.fd, data)
            while written < len(data):  # a regular file takes it all at once; a full disk raises instead
                written += os.write(self.fd, data[written:])
        except OSError as error:
            raise OSError(error.errno, "cannot write the results to %s: %s" % (self.path, error.strerror))
        if time.monotonic() - self.last_sync >= FSYNC_INTERVAL:
            self._sync()

    def _sync(self) -> None:
        try:
            os.fsync(self.fd)
        except OSError as error:
            if error.errno != errno.EINVAL:  # EINVAL: a pipe or a device, which has nothing to sync
                raise
        self.last_sync = time.monotonic()

    def close(self) -> None:
        try:
            self._sync()
        finally:
            os.close(self.fd)


def save_binary(output_dir: str, relative: str, data: bytes) -> str:
    """Write an answer's bytes under output_dir, whole or not at all (temporary name, then rename)."""
    target = os.path.join(output_dir, relative)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    temporary = target + ".partial"
    with open(temporary, "wb") as stream:
        stream.write(data)
    os.replace(temporary, target)
    return target
