"""One request's body from its inputs and the request shape, and its answer split back per input."""

import json
import mimetypes
import os
from typing import Any, Dict, List, Optional, Tuple

from urllib3.filepost import encode_multipart_formdata

from .inputs import Input, read_text
from .spec import LIST, MULTIPART, RequestShape


def build_body(shape: RequestShape, items: List[Input]) -> Tuple[bytes, str]:
    """(body, content type). Raises OSError / UnicodeDecodeError when an input cannot be read."""
    if shape.kind == MULTIPART:
        item = items[0]
        with open(item.path or "", "rb") as stream:
            data = stream.read()
        media_type = mimetypes.guess_type(item.path or "")[0] or "application/octet-stream"
        form = dict(shape.form)
        form.update((name, value if isinstance(value, str) else json.dumps(value)) for name, value in item.fields.items())
        fields = list(form.items())  # type: List[Any]
        fields.append((shape.file_field, (os.path.basename(item.path or "input"), data, media_type)))
        return encode_multipart_formdata(fields)
    if shape.kind == LIST:
        body = dict(shape.body)
        body[shape.list_field or "text"] = [read_text(item) for item in items]
        return json.dumps(body).encode("utf-8"), "application/json"
    body = dict(shape.body)
    item = items[0]
    if item.path is not None and not item.fields:
        # A file given to a JSON-body model is the body itself (a JSON object).
        with open(item.path, "rb") as stream:
            document = json.loads(stream.read().decode("utf-8"))
        if not isinstance(document, dict):
            raise ValueError("%s is not a JSON object" % item.path)
        body.update(document)
    body.update(item.fields)
    return json.dumps(body).encode("utf-8"), "application/json"


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
