"""One request from its inputs and the request shape, and its answer split back per input."""

import json
import mimetypes
import os
import urllib.parse
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from urllib3.filepost import encode_multipart_formdata

from .inputs import Input, read_text
from .spec import LIST, MULTIPART, QUERY, RequestShape


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _document(item: Input) -> Dict[str, Any]:
    """A JSON-body or query model's input: its manifest row, or its file's JSON object."""
    if item.fields or item.path is None:
        return dict(item.fields)
    with open(item.path, "rb") as stream:
        document = json.loads(stream.read().decode("utf-8"))
    if not isinstance(document, dict):
        raise ValueError("%s is not a JSON object" % item.path)
    return document


@dataclass
class Request:
    path: str                      # with its query
    body: bytes = b""
    content_type: Optional[str] = None


def build_request(shape: RequestShape, items: List[Input]) -> Request:
    """One request for the inputs. Raises OSError / ValueError (UnicodeDecodeError) when an input
    cannot be read."""
    query = dict(shape.query)
    if shape.kind == MULTIPART:
        item = items[0]
        with open(item.path or "", "rb") as stream:
            data = stream.read()
        media_type = mimetypes.guess_type(item.path or "")[0] or "application/octet-stream"
        form = dict(shape.form)
        form.update((name, _text(value)) for name, value in item.fields.items())
        fields: List[Any] = list(form.items())
        # The upload's file name as text: a name that is not UTF-8 keeps its readable part.
        filename = os.fsencode(os.path.basename(item.path or "input")).decode("utf-8", "replace")
        fields.append((shape.file_field, (filename, data, media_type)))
        body, content_type = encode_multipart_formdata(fields)
        return Request(with_query(shape.path, query), body, content_type)
    if shape.kind == LIST:
        document = dict(shape.body)
        document[shape.list_field or "text"] = [read_text(item) for item in items]
        return Request(with_query(shape.path, query), json.dumps(document).encode("utf-8"), "application/json")
    if shape.kind == QUERY:
        query.update((name, _text(value)) for name, value in _document(items[0]).items())
        return Request(with_query(shape.path, query))
    document = dict(shape.body)
    document.update(_document(items[0]))
    return Request(with_query(shape.path, query), json.dumps(document).encode("utf-8"), "application/json")


def with_query(path: str, query: Dict[str, str]) -> str:
    if not query:
        return path
    return path + ("&" if "?" in path else "?") + urllib.parse.urlencode(query)


def split_answer(answer: Any, count: int) -> Optional[List[Any]]:
    """A list model's answer for several inputs, as the answers to each one alone: the list that
    has one entry per input (MAX models call it predictions) cut into one-entry lists."""
    if count == 1:
        return [answer]
    if not isinstance(answer, dict):
        return None
    lists = [key for key, value in answer.items() if isinstance(value, list) and len(value) == count]
    key = "predictions" if "predictions" in lists else (lists[0] if len(lists) == 1 else None)
    if key is None:
        return None
    return [dict(answer, **{key: [entry]}) for entry in answer[key]]


def is_json(content_type: str) -> bool:
    media_type = content_type.split(";")[0].strip().lower()
    return media_type == "application/json" or media_type.endswith("+json")


def output_name(name: str, content_type: str) -> str:
    """Where a binary answer goes under --output-dir: the input's name (its path below the directory
    or glob it came from), made relative and safe, with the extension of the answer's type
    (shapes.png -> shapes.png; a.jpg -> a.png for a PNG answer)."""
    parts = [part for part in name.replace("\\", "/").split("/") if part not in ("", ".", "..")]
    relative = os.path.join(*parts) if parts else "input"
    extension = mimetypes.guess_extension(content_type.split(";")[0].strip().lower() or "") or ".bin"
    if extension == ".jpe":
        extension = ".jpg"
    root, _ = os.path.splitext(relative)
    return root + extension
