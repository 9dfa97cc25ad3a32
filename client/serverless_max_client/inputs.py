"""The inputs of a run, streamed: files, directories, globs, `-` (paths on stdin) and manifests.

Nothing here holds the whole list: each source is walked lazily, so a million inputs cost the memory
of one. Every input has an id (the path as given, or the manifest's id column) that names it in the
results, decides its shard and tells --resume whether it is done.
"""

import csv
import glob
import hashlib
import io
import itertools
import json
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Iterator, List, Optional, TextIO, Tuple


class UsageError(Exception):
    """A mistake in the command line or its files: exit status 2, the message says what to do."""


@dataclass
class Input:
    id: str
    path: Optional[str] = None          # the file to send (multipart models) or to read as text (list models)
    fields: Dict[str, Any] = field(default_factory=dict)  # a manifest row's other columns (JSONL: typed)
    text: Optional[str] = None          # a manifest row's item for a list model
    name: Optional[str] = None          # where a binary answer goes under --output-dir (relative)


def id_hash(input_id: str) -> int:
    """A stable 64-bit hash of an id: the same on every machine and Python (unlike hash())."""
    data = input_id.encode("utf-8", "surrogatepass")  # file names that are not UTF-8 hash too
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


@dataclass
class Shard:
    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> "Shard":
        try:
            index, count = (int(part) for part in text.split("/"))
        except ValueError:
            raise UsageError("--shard takes K/N with whole numbers, e.g. --shard 0/4, not %r" % text)
        if count < 1 or not 0 <= index < count:
            raise UsageError("--shard K/N needs N >= 1 and 0 <= K < N (K counts from 0, like "
                             "CLOUD_RUN_TASK_INDEX and JOB_COMPLETION_INDEX), not %r" % text)
        return cls(index, count)

    def takes(self, input_id: str) -> bool:
        return id_hash(input_id) % self.count == self.index


GLOB_CHARACTERS = set("*?[")


def _walk(directory: str) -> Iterator[str]:
    """Files under a directory, depth first, names sorted per directory (stable, and streamed)."""
    try:
        entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
    except OSError as error:
        raise UsageError("cannot list %s: %s" % (directory, error.strerror or error))
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir(follow_symlinks=True):
            yield from _walk(entry.path)
        else:
            yield entry.path


def _glob_root(pattern: str) -> str:
    """The directory part of a glob before its first wildcard."""
    parts = pattern.split(os.sep)
    literal = list(itertools.takewhile(lambda part: not GLOB_CHARACTERS & set(part), parts[:-1]))
    return os.sep.join(literal) or "."


def _name(path: str, root: Optional[str] = None) -> str:
    """Where the input's binary answer goes below --output-dir: below the directory (or a glob's
    directory) it was found in, that directory's name and the path within it (photos/a/cat.png); a
    file named by itself, its path as given when relative and inside the working directory, else its
    file name. Distinct inputs so get distinct names, short ones where they can be."""
    if root is not None:
        top = os.path.basename(os.path.normpath(os.path.abspath(root)))
        return os.path.join(top, os.path.relpath(path, root)) if os.path.normpath(root) != "." else \
            os.path.relpath(path, root)
    relative = os.path.normpath(path)
    if os.path.isabs(relative) or relative.split(os.sep)[0] == os.pardir:
        return os.path.basename(relative)
    return relative


def _paths(argument: str, stdin: TextIO) -> Iterator[Tuple[str, str]]:
    """(path, name): each file, and where its binary answer goes (see _name)."""
    if argument == "-":
        for line in stdin:
            line = line.rstrip("\r\n")
            if line:
                yield line, _name(line)
    elif os.path.isdir(argument):
        for path in _walk(argument):
            yield path, _name(path, argument)
    elif GLOB_CHARACTERS & set(argument) and not os.path.exists(argument):
        matched = False
        root = _glob_root(argument)
        for path in glob.iglob(argument, recursive=True):
            if not os.path.isdir(path):
                matched = True
                yield path, _name(path, root)
        if not matched:
            raise UsageError("no file matches %s" % argument)
    else:
        # A missing or unreadable file is the input's failure (a result line), not the run's.
        yield argument, _name(argument)


@dataclass
class ManifestColumns:
    file: Optional[str] = None   # the column naming the file to send (file upload models)
    id: Optional[str] = None     # the column naming the input; default the file, else MANIFEST:LINE
    text: Optional[str] = None   # the column holding a list model's item (else its file column's file)
    file_required: bool = False  # a file upload model: every row names its file


def _rows(manifest: str, stdin: TextIO) -> Iterator[Tuple[int, Dict[str, Any]]]:
    """(line number, row) for each row of a CSV (with a header line) or JSONL manifest."""
    stream = stdin if manifest == "-" else None
    try:
        stream = stream or open(manifest, encoding="utf-8-sig", newline="")  # -sig: a spreadsheet's BOM
    except OSError as error:
        raise UsageError("cannot read the manifest %s: %s" % (manifest, error.strerror or error))
    with stream:
        if manifest.lower().endswith(".csv"):
            reader = csv.DictReader(stream)
            for row in reader:
                yield reader.line_num, dict((key, value) for key, value in row.items() if key is not None)
            return
        for number, line in enumerate(stream, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as error:
                raise UsageError("%s line %d is not JSON: %s" % (manifest, number, error))
            if not isinstance(row, dict):
                raise UsageError("%s line %d is not a JSON object" % (manifest, number))
            yield number, row


def _manifest_inputs(manifest: str, columns: ManifestColumns, stdin: TextIO) -> Iterator[Input]:
    base = os.path.dirname(manifest) if manifest != "-" else ""
    for number, row in _rows(manifest, stdin):
        path = row.pop(columns.file, None) if columns.file else None
        text = row.pop(columns.text, None) if columns.text else None
        if columns.file_required and path is None:
            raise UsageError("%s row %d has no %r column (choose the file column with --file-column)"
                             % (manifest, number, columns.file))
        explicit_id = row.pop(columns.id, None) if columns.id else None
        name = str(explicit_id) if explicit_id is not None else (str(path) if path is not None else None)
        if path is not None:
            path = str(path)
            if base and not os.path.isabs(path):
                path = os.path.join(base, path)  # relative to the manifest, like a playlist's entries
        input_id = str(explicit_id) if explicit_id is not None else (path or "%s:%d" % (manifest, number))
        fields = dict((str(key), value) for key, value in row.items())
        yield Input(input_id, path=path, fields=fields, text=None if text is None else str(text), name=name)


def iter_inputs(arguments: Iterable[str], manifest: Optional[str] = None,
                columns: Optional[ManifestColumns] = None, shard: Optional[Shard] = None,
                stdin: Optional[TextIO] = None) -> Iterator[Input]:
    """Every input of the run, in order, this shard's only."""
    stdin = stdin or sys.stdin
    if manifest is not None:
        source: Iterator[Input] = _manifest_inputs(manifest, columns or ManifestColumns(), stdin)
    else:
        source = (Input(path, path=path, name=name) for argument in arguments for path, name in _paths(argument, stdin))
    for item in source:
        if shard is None or shard.takes(item.id):
            yield item


def can_count(arguments: List[str], manifest: Optional[str]) -> bool:
    """Whether the inputs can be walked twice (once to count them for the progress bar)."""
    return "-" not in arguments and manifest != "-"


def read_text(item: Input) -> str:
    """A list model's item: the manifest's text, else the file's contents as UTF-8."""
    if item.text is not None:
        return item.text
    if item.path is None:
        raise ValueError("the row has neither text nor a file")
    with io.open(item.path, encoding="utf-8") as stream:
        return stream.read()
