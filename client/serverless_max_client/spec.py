"""The shape of a prediction request, read from the model's own swagger.json (Swagger 2.0, as
flask-restplus and flask-restx write it for every MAX model) and adjusted by flags.

Three shapes cover the MAX models:
  multipart  POST multipart/form-data: one file field (image, audio, file...) plus form fields
  list       POST application/json {"<field>": [item, ...]}: text models; several inputs per request
  json       POST application/json built from a manifest row's columns
  query      POST with no body: a manifest row's columns are query parameters (recommenders)
"""

import json
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from .inputs import UsageError

MULTIPART, LIST, JSON_BODY, QUERY = "multipart", "list", "json", "query"
DEFAULT_PREDICT_PATH = "/model/predict"
HOW_TO_SHAPE = ("give the request's shape instead: --field NAME for a model that takes a file upload "
                "(e.g. --field image), or --json-field NAME for a model that takes a JSON list (e.g. --json-field "
                "text), and --path if its predict route is not " + DEFAULT_PREDICT_PATH)


@dataclass
class RequestShape:
    kind: str
    path: str = DEFAULT_PREDICT_PATH
    file_field: Optional[str] = None
    list_field: Optional[str] = None
    form: Dict[str, str] = field(default_factory=dict)    # multipart fields sent with every file
    query: Dict[str, str] = field(default_factory=dict)   # query parameters with defaults
    body: Dict[str, Any] = field(default_factory=dict)    # JSON fields sent with every request
    source: str = "flags"                                   # where the shape came from, for --dry-run
    base_path: str = "/"                                    # the spec's basePath


def _resolve(spec: Dict[str, Any], schema: Dict[str, Any]) -> Dict[str, Any]:
    seen = 0
    while "$ref" in schema and seen < 20:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = spec.get("definitions", {}).get(name, {})
        seen += 1
    return schema


def predict_operation(spec: Dict[str, Any]) -> Tuple[str, Dict[str, Any]]:
    """The POST operation that predicts: /model/predict when present, else the one POST path whose
    name or operationId says predict."""
    paths = spec.get("paths")
    if not isinstance(paths, dict):
        raise UsageError("swagger.json has no paths: it is not a model's API document; " + HOW_TO_SHAPE)
    posts = [(path, item["post"]) for path, item in paths.items() if isinstance(item, dict) and "post" in item]
    for path, operation in posts:
        if path.rstrip("/").endswith(DEFAULT_PREDICT_PATH):
            return path, operation
    named = [(path, operation) for path, operation in posts
             if "predict" in path.lower() or "predict" in str(operation.get("operationId", "")).lower()]
    if len(named) == 1:
        return named[0]
    if named:
        raise UsageError("swagger.json has several predict operations (%s); choose one with --path"
                         % ", ".join(path for path, _ in named))
    raise UsageError("swagger.json has no predict operation (a POST route named predict; it has %s); %s"
                     % (", ".join(sorted(paths)) or "no routes", HOW_TO_SHAPE))


def _default_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)


def shape_from_spec(spec: Dict[str, Any]) -> RequestShape:
    path, operation = predict_operation(spec)
    base_path = spec.get("basePath") or "/"
    full_path = path
    files, form, query, body_schema, query_names = [], {}, {}, None, []
    for parameter in operation.get("parameters", []):
        parameter = _resolve(spec, parameter)
        where, name = parameter.get("in"), str(parameter.get("name"))
        if where == "formData" and parameter.get("type") == "file":
            files.append(name)
        elif where == "formData" and "default" in parameter:
            form[name] = _default_text(parameter["default"])
        elif where == "query":
            query_names.append(name)
            if "default" in parameter:
                query[name] = _default_text(parameter["default"])
        elif where == "body":
            body_schema = _resolve(spec, parameter.get("schema", {}))
    if files:
        if len(files) > 1:
            raise UsageError("the predict operation takes several files (%s); choose one with --field"
                             % ", ".join(files))
        return RequestShape(MULTIPART, full_path, file_field=files[0], form=form, query=query, source="swagger.json",
                            base_path=base_path)
    if body_schema is not None:
        properties = body_schema.get("properties", {})
        lists = [name for name, schema in properties.items()
                 if _resolve(spec, schema).get("type") == "array"
                 and _resolve(spec, _resolve(spec, schema).get("items", {})).get("type") in ("string", None)]
        required = body_schema.get("required", [])
        if len(lists) == 1 and all(name in lists for name in required):
            return RequestShape(LIST, full_path, list_field=lists[0], query=query, source="swagger.json",
                                base_path=base_path)
        defaults = dict((name, _resolve(spec, schema)["default"]) for name, schema in properties.items()
                        if "default" in _resolve(spec, schema))
        return RequestShape(JSON_BODY, full_path, body=defaults, query=query, source="swagger.json",
                            base_path=base_path)
    if query_names:
        return RequestShape(QUERY, full_path, query=query, source="swagger.json", base_path=base_path)
    raise UsageError("the predict operation %s takes neither a file, a JSON body nor query parameters; %s"
                     % (full_path, HOW_TO_SHAPE))


def apply_flags(shape: Optional[RequestShape], file_field: Optional[str], json_field: Optional[str],
                path: Optional[str], form_fields: List[str]) -> RequestShape:
    """The shape after --field, --json-field, --path and -F k=v; without a spec these must say it all."""
    if file_field and json_field:
        raise UsageError("--field (a file upload) and --json-field (a JSON list) exclude each other")
    if shape is None:
        if not (file_field or json_field):
            raise UsageError(HOW_TO_SHAPE)
        shape = RequestShape(MULTIPART if file_field else LIST)
    if file_field:
        shape.kind, shape.file_field, shape.list_field = MULTIPART, file_field, None
    elif json_field:
        shape.kind, shape.list_field, shape.file_field = LIST, json_field, None
    if path:
        shape.path = path if path.startswith("/") else "/" + path
    for pair in form_fields:
        name, equals, value = pair.partition("=")
        if not equals or not name:
            raise UsageError("-F takes NAME=VALUE, not %r" % pair)
        if name in shape.query or shape.kind == QUERY:
            shape.query[name] = value  # the spec says it goes in the query (MAX apps also read it from the form)
        elif shape.kind == MULTIPART:
            shape.form[name] = value
        else:
            try:
                shape.body[name] = json.loads(value)
            except ValueError:
                shape.body[name] = value
    return shape


def under_base(shape: RequestShape, base_url: str) -> RequestShape:
    """The predict path relative to the base URL. The spec's basePath is where the app is mounted as
    the app sees it: behind OpenWhisk it is the web action's path, which the base URL already holds.
    Only a base URL without a path (a gateway that mounts the app below its root) takes it."""
    if urllib.parse.urlsplit(base_url).path.strip("/") == "" and shape.base_path.strip("/"):
        shape.path = "/" + shape.base_path.strip("/") + shape.path
    return shape


def model_base(url: str) -> str:
    """The deployed model's base URL: as given, less a trailing /model/predict or /swagger.json."""
    for suffix in (DEFAULT_PREDICT_PATH, "/swagger.json"):
        if url.rstrip("/").endswith(suffix):
            return url.rstrip("/")[:-len(suffix)]
    return url.rstrip("/")
