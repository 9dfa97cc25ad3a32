"""Recorded sample requests for the example models, and how to send and check them.

Each example keeps its cases in `examples/<model>/samples/requests.json`, a JSON list of:

    {"name": "predict-digit-3",                     unique within the model, [a-z0-9-]
     "method": "POST", "path": "/model/predict",
     "query": "threshold=0.1",                      raw query string, may be ""
     at most one request body:
       "multipart": {"image": {"file": "digit-3.png", "content_type": "image/png"},
                     "threshold": "0.5"},           a file part, or a plain form field
       "json": {"text": ["I love it"]},
       "body": {"file": "x.bin", "content_type": "application/octet-stream"},
     "expect": {"status": 200, "content_type": "application/json",
                at most one of:
                "json": "expected/predict-digit-3.json",   compared parsed
                "png": "expected/predict-shapes.png",      compared by decoded pixels
                "text_contains": "Not Found"}}

File names are relative to the samples directory. Python 3.6 compatible, stdlib only.
"""
import collections
import http.client
import json
import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from typing import Any, Dict, List, NamedTuple, NoReturn, Optional, Tuple

EXAMPLES_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, 'examples'))

# Fixed so that a sample's bytes are identical on every load.
MULTIPART_BOUNDARY = 'serverless-max-sample-7d4f1c2a'
# Outputs are rounded to 4 decimals; a different numpy or Pillow build may still move
# a value across a rounding boundary.
FLOAT_TOLERANCE = 1e-3
# Pillow releases bundle different JPEG decoders and resampling code, which move
# pixel values by a level or two.
PIXEL_TOLERANCE = 4

_CASE_KEYS = {'name', 'method', 'path', 'query', 'multipart', 'json', 'body', 'expect'}
_BODY_KEYS = ('multipart', 'json', 'body')
_EXPECT_KEYS = {'status', 'content_type', 'json', 'png', 'text_contains'}
_EXPECT_BODY_KEYS = ('json', 'png', 'text_contains')
_NAME = re.compile(r'^[a-z0-9]+(-[a-z0-9]+)*$')


class SampleRequest(NamedTuple):
    name: str
    model_dir: str
    method: str
    path: str
    query: str
    headers: Dict[str, str]  # Content-Type whenever there is a body
    body: bytes
    expect: Dict[str, Any]


def example_model_dirs() -> List[str]:
    """Absolute directories of the example models (those with a sample manifest), sorted."""
    return sorted(
        os.path.join(EXAMPLES_DIR, name) for name in os.listdir(EXAMPLES_DIR)
        if os.path.isfile(_manifest_path(os.path.join(EXAMPLES_DIR, name))))


def load_samples(model_dir: str) -> List[SampleRequest]:
    """The model's sample requests, in manifest order; ValueError for a malformed manifest."""
    samples = []
    seen = set()
    for case in _read_manifest(model_dir):
        where = '{}: case {!r}'.format(_manifest_path(model_dir), case.get('name'))
        _validate_case(case, where)
        if case['name'] in seen:
            raise ValueError('{}: duplicate name'.format(where))
        seen.add(case['name'])
        headers, body = _encode_body(model_dir, case)
        samples.append(SampleRequest(
            name=case['name'], model_dir=model_dir, method=case['method'], path=case['path'],
            query=case.get('query', ''), headers=headers, body=body, expect=dict(case['expect'])))
    return samples


def target(sample: SampleRequest) -> str:
    """Path and query string, as they appear in the request line."""
    return sample.path + ('?' + sample.query if sample.query else '')


def curl_args(sample: SampleRequest) -> List[str]:
    """curl arguments that send this sample; the caller appends output options and the URL."""
    case = _find_case(sample.model_dir, sample.name)
    args = ['-X', sample.method]
    if 'multipart' in case:
        for field, value in case['multipart'].items():
            if isinstance(value, str):
                # --form-string: the value is sent as is, even if it starts with @ or <.
                args += ['--form-string', '{}={}'.format(field, value)]
            else:
                args += ['-F', '{}=@{};type={}'.format(
                    field, _sample_file(sample.model_dir, value['file']), value['content_type'])]
    elif 'json' in case:
        # The JSON text is ASCII (see _encode_body), so it is safe as an argument in any locale.
        args += ['-H', 'Content-Type: ' + sample.headers['Content-Type'],
                 '--data-binary', sample.body.decode('ascii')]
    elif 'body' in case:
        args += ['-H', 'Content-Type: ' + sample.headers['Content-Type'],
                 '--data-binary', '@' + _sample_file(sample.model_dir, case['body']['file'])]
    return args


def send_sample(sample: SampleRequest, host: str = '127.0.0.1', port: int = 5000,
                timeout: float = 60.0) -> Tuple[int, str, bytes]:
    """Send the sample over HTTP; returns status, Content-Type and body."""
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request(sample.method, target(sample), body=sample.body or None,
                           headers=sample.headers)
        response = connection.getresponse()
        return response.status, response.getheader('Content-Type', ''), response.read()
    finally:
        connection.close()


def check_expected(sample: SampleRequest, status: int, content_type: str, body: bytes) -> None:
    """AssertionError unless the response matches what was recorded for the sample."""
    expect = sample.expect
    if status != expect['status']:
        _fail(sample, 'status {}, expected {}'.format(status, expect['status']), body)
    if 'content_type' in expect and media_type(content_type) != media_type(expect['content_type']):
        _fail(sample, 'Content-Type {!r}, expected {!r}'.format(content_type, expect['content_type']),
              body)
    if 'json' in expect:
        with open(_sample_file(sample.model_dir, expect['json']), encoding='utf-8') as expected_file:
            expected = json.load(expected_file)
        try:
            actual = json.loads(body.decode('utf-8'))
        except ValueError as error:
            _fail(sample, 'body is not JSON ({})'.format(error), body)
        difference = _json_difference(actual, expected, '$')
        if difference:
            _fail(sample, 'JSON differs at ' + difference, body)
    if 'png' in expect:
        with open(_sample_file(sample.model_dir, expect['png']), 'rb') as expected_file:
            expected_png = expected_file.read()
        try:
            difference = _pixel_difference(decode_png(body), decode_png(expected_png))
        except ValueError as error:
            _fail(sample, 'body is not a comparable PNG ({})'.format(error), body)
        if difference:
            _fail(sample, 'image differs: ' + difference, b'')
    if 'text_contains' in expect and expect['text_contains'] not in body.decode('utf-8', 'replace'):
        _fail(sample, 'body does not contain {!r}'.format(expect['text_contains']), body)


def decode_png(data: bytes) -> Tuple[int, int, int, bytes]:
    """Width, height, channels and raw 8-bit pixels of a non-interlaced gray/RGB(A) PNG."""
    if data[:8] != b'\x89PNG\r\n\x1a\n':
        raise ValueError('no PNG signature')
    header = None
    compressed = []
    position = 8
    while position + 8 <= len(data):
        length, kind = struct.unpack('>I4s', data[position:position + 8])
        chunk = data[position + 8:position + 8 + length]
        position += 12 + length  # length, type, data, CRC
        if kind == b'IHDR':
            header = struct.unpack('>IIBBBBB', chunk)
        elif kind == b'IDAT':
            compressed.append(chunk)
        elif kind == b'IEND':
            break
    if header is None:
        raise ValueError('no IHDR chunk')
    width, height, bit_depth, color_type, _, _, interlace = header
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(color_type)
    if channels is None or bit_depth != 8 or interlace != 0:
        raise ValueError('unsupported PNG: color type {}, bit depth {}, interlace {}'.format(
            color_type, bit_depth, interlace))
    return width, height, channels, _unfilter(zlib.decompress(b''.join(compressed)),
                                              width * channels, height, channels)


class ModelServer(object):
    """An example model's own server: `python app.py` in its directory, maxfw on port 5000.

    A context manager; entering returns once the port accepts connections.
    """

    PORT = 5000

    def __init__(self, model_dir: str, python: str = sys.executable,
                 startup_timeout: float = 120.0) -> None:
        self.model_dir = model_dir
        self.python = python
        self.startup_timeout = startup_timeout
        self._process: Optional[subprocess.Popen] = None
        self._log: Optional[Any] = None

    def __enter__(self) -> 'ModelServer':
        self.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def start(self) -> None:
        if _accepts_connections(self.PORT):
            raise RuntimeError(
                'cannot start the example model {}: port {} is already in use and maxfw always '
                'serves there; stop whatever holds it (`ss -ltnp "sport = :{}"` shows it)'.format(
                    self.model_dir, self.PORT, self.PORT))
        self._log = tempfile.TemporaryFile()
        environment = dict(os.environ, PYTHONUNBUFFERED='1', PYTHONDONTWRITEBYTECODE='1')
        self._process = subprocess.Popen(
            [self.python, 'app.py'], cwd=self.model_dir, env=environment,
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.startup_timeout
        while not _accepts_connections(self.PORT):
            if self._process.poll() is not None:
                raise RuntimeError('{} app.py in {} exited with status {} before listening:\n{}'.format(
                    self.python, self.model_dir, self._process.returncode, self.log()))
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError('{} app.py in {} did not listen on port {} within {} s:\n{}'.format(
                    self.python, self.model_dir, self.PORT, self.startup_timeout, self.log()))
            time.sleep(0.1)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def log(self) -> str:
        """What the server has written to stdout and stderr so far."""
        if self._log is None:
            return ''
        self._log.seek(0)
        return self._log.read().decode('utf-8', 'replace')


def _manifest_path(model_dir: str) -> str:
    return os.path.join(model_dir, 'samples', 'requests.json')


def _sample_file(model_dir: str, name: str) -> str:
    return os.path.join(model_dir, 'samples', name)


def _read_manifest(model_dir: str) -> List[Dict[str, Any]]:
    with open(_manifest_path(model_dir), encoding='utf-8') as manifest:
        # Ordered, so multipart fields are always encoded in manifest order.
        cases = json.load(manifest, object_pairs_hook=collections.OrderedDict)
    if not isinstance(cases, list):
        raise ValueError('{}: expected a JSON list'.format(_manifest_path(model_dir)))
    return cases


def _find_case(model_dir: str, name: str) -> Dict[str, Any]:
    for case in _read_manifest(model_dir):
        if case.get('name') == name:
            return case
    raise KeyError('{}: no case named {!r}'.format(_manifest_path(model_dir), name))


def _validate_case(case: Dict[str, Any], where: str) -> None:
    unknown = set(case) - _CASE_KEYS
    if unknown:
        raise ValueError('{}: unknown keys {}'.format(where, sorted(unknown)))
    if not isinstance(case.get('name'), str) or not _NAME.match(case['name']):
        raise ValueError('{}: name must match {}'.format(where, _NAME.pattern))
    for key in ('method', 'path'):
        if not isinstance(case.get(key), str):
            raise ValueError('{}: {} must be a string'.format(where, key))
    if not case['path'].startswith('/'):
        raise ValueError('{}: path must start with /'.format(where))
    if len([key for key in _BODY_KEYS if key in case]) > 1:
        raise ValueError('{}: at most one of {}'.format(where, ', '.join(_BODY_KEYS)))
    expect = case.get('expect')
    if not isinstance(expect, dict) or not isinstance(expect.get('status'), int):
        raise ValueError('{}: expect must hold an integer status'.format(where))
    unknown = set(expect) - _EXPECT_KEYS
    if unknown:
        raise ValueError('{}: unknown expect keys {}'.format(where, sorted(unknown)))
    if len([key for key in _EXPECT_BODY_KEYS if key in expect]) > 1:
        raise ValueError('{}: expect holds at most one of {}'.format(where, ', '.join(_EXPECT_BODY_KEYS)))


def _encode_body(model_dir: str, case: Dict[str, Any]) -> Tuple[Dict[str, str], bytes]:
    if 'multipart' in case:
        return ({'Content-Type': 'multipart/form-data; boundary=' + MULTIPART_BOUNDARY},
                _encode_multipart(model_dir, case['multipart']))
    if 'json' in case:
        # ASCII-only JSON (non-ASCII text as \u escapes) so the same text also works as a
        # command-line argument; raw UTF-8 bodies are what "body" cases are for.
        return {'Content-Type': 'application/json'}, json.dumps(case['json']).encode('ascii')
    if 'body' in case:
        with open(_sample_file(model_dir, case['body']['file']), 'rb') as body_file:
            return {'Content-Type': case['body']['content_type']}, body_file.read()
    return {}, b''


def _encode_multipart(model_dir: str, fields: Dict[str, Any]) -> bytes:
    parts = []
    for field, value in fields.items():
        if isinstance(value, str):
            headers = 'Content-Disposition: form-data; name="{}"\r\n'.format(field)
            content = value.encode('utf-8')
        else:
            headers = ('Content-Disposition: form-data; name="{}"; filename="{}"\r\n'
                       'Content-Type: {}\r\n').format(
                           field, os.path.basename(value['file']), value['content_type'])
            with open(_sample_file(model_dir, value['file']), 'rb') as part_file:
                content = part_file.read()
        parts.append(b'--' + MULTIPART_BOUNDARY.encode('ascii') + b'\r\n'
                     + headers.encode('utf-8') + b'\r\n' + content + b'\r\n')
    return b''.join(parts) + b'--' + MULTIPART_BOUNDARY.encode('ascii') + b'--\r\n'


def media_type(content_type: str) -> str:
    """'text/html; charset=utf-8' -> 'text/html': the charset parameter varies by Werkzeug release."""
    return content_type.split(';', 1)[0].strip().lower()


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _json_difference(actual: Any, expected: Any, where: str) -> Optional[str]:
    """Where the two JSON values differ (numbers within FLOAT_TOLERANCE), or None."""
    if _is_number(actual) and _is_number(expected):
        if abs(actual - expected) <= FLOAT_TOLERANCE:
            return None
    elif isinstance(actual, dict) and isinstance(expected, dict):
        if set(actual) != set(expected):
            return '{}: keys {} != {}'.format(where, sorted(actual), sorted(expected))
        for key in expected:
            difference = _json_difference(actual[key], expected[key], '{}.{}'.format(where, key))
            if difference:
                return difference
        return None
    elif isinstance(actual, list) and isinstance(expected, list):
        if len(actual) != len(expected):
            return '{}: {} items != {}'.format(where, len(actual), len(expected))
        for index, (actual_item, expected_item) in enumerate(zip(actual, expected)):
            difference = _json_difference(actual_item, expected_item, '{}[{}]'.format(where, index))
            if difference:
                return difference
        return None
    elif type(actual) is type(expected) and actual == expected:
        return None
    return '{}: {!r} != {!r}'.format(where, actual, expected)


def _pixel_difference(actual: Tuple[int, int, int, bytes],
                      expected: Tuple[int, int, int, bytes]) -> Optional[str]:
    if actual[:3] != expected[:3]:
        return 'width, height, channels {} != {}'.format(actual[:3], expected[:3])
    largest = max(abs(a - b) for a, b in zip(actual[3], expected[3]))
    if largest > PIXEL_TOLERANCE:
        return 'a channel value is off by {} (tolerance {})'.format(largest, PIXEL_TOLERANCE)
    return None


def _unfilter(raw: bytes, stride: int, height: int, bytes_per_pixel: int) -> bytes:
    """Undo the per-row PNG filters (none, sub, up, average, Paeth)."""
    pixels = bytearray()
    previous = bytearray(stride)
    for row in range(height):
        start = row * (stride + 1)
        filter_type = raw[start]
        line = bytearray(raw[start + 1:start + 1 + stride])
        for i in range(stride):
            left = line[i - bytes_per_pixel] if i >= bytes_per_pixel else 0
            up = previous[i]
            if filter_type == 1:
                line[i] = (line[i] + left) & 0xFF
            elif filter_type == 2:
                line[i] = (line[i] + up) & 0xFF
            elif filter_type == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif filter_type == 4:
                upper_left = previous[i - bytes_per_pixel] if i >= bytes_per_pixel else 0
                line[i] = (line[i] + _paeth(left, up, upper_left)) & 0xFF
            elif filter_type != 0:
                raise ValueError('row {}: unknown filter type {}'.format(row, filter_type))
        pixels += line
        previous = line
    return bytes(pixels)


def _paeth(left: int, up: int, upper_left: int) -> int:
    estimate = left + up - upper_left
    distance_left, distance_up, distance_upper_left = (
        abs(estimate - left), abs(estimate - up), abs(estimate - upper_left))
    if distance_left <= distance_up and distance_left <= distance_upper_left:
        return left
    if distance_up <= distance_upper_left:
        return up
    return upper_left


def _accepts_connections(port: int) -> bool:
    try:
        socket.create_connection(('127.0.0.1', port), timeout=1).close()
    except OSError:
        return False
    return True


def _fail(sample: SampleRequest, problem: str, body: bytes) -> NoReturn:
    excerpt = body[:300].decode('utf-8', 'replace')
    raise AssertionError('{} {} ({}): {}{}'.format(
        sample.method, target(sample), sample.name, problem,
        '\nbody: ' + excerpt if excerpt else ''))
