"""The example models, served by their own maxfw servers, answer every recorded sample."""
import os
import re
import struct
import subprocess
import zlib
from typing import Iterator, Optional, Set

import pytest

from samples import (EXAMPLES_DIR, ModelServer, SampleRequest, check_expected, curl_args, decode_png,
                     example_model_dirs, load_samples, send_sample, target)

MODEL_DIRS = example_model_dirs()
SAMPLES = [sample for model_dir in MODEL_DIRS for sample in load_samples(model_dir)]
SAMPLE_IDS = ['{}:{}'.format(os.path.basename(s.model_dir), s.name) for s in SAMPLES]
MAX_ASSETS_BYTES = 200 * 1024


def registered_routes(model_dir: str) -> Set[str]:
    """The /model/... routes app.py adds with max_app.add_api(Class, '/route')."""
    with open(os.path.join(model_dir, 'app.py')) as app_source:
        routes = re.findall(r"add_api\(\s*\w+\s*,\s*'([^']+)'", app_source.read())
    return {'/model' + route for route in routes}


class OneServerAtATime(object):
    """Runs the server of the model the current test needs; they all listen on port 5000."""

    def __init__(self) -> None:
        self.current: Optional[ModelServer] = None

    def serve(self, model_dir: str) -> ModelServer:
        if self.current is None or self.current.model_dir != model_dir:
            self.stop()
            self.current = ModelServer(model_dir)
            self.current.start()
        return self.current

    def stop(self) -> None:
        if self.current is not None:
            self.current.stop()
            self.current = None


@pytest.fixture(scope='session')
def servers() -> Iterator[OneServerAtATime]:
    pool = OneServerAtATime()
    yield pool
    pool.stop()


@pytest.fixture
def model_server(servers: OneServerAtATime, sample: SampleRequest) -> ModelServer:
    # The cases are listed model by model, so each server starts once per test function.
    return servers.serve(sample.model_dir)


def test_there_are_three_examples() -> None:
    assert [os.path.basename(d) for d in MODEL_DIRS] == [
        'max-example-digit-classifier', 'max-example-image-upscaler', 'max-example-text-sentiment']


@pytest.mark.parametrize('model_dir', MODEL_DIRS, ids=os.path.basename)
def test_manifest_covers_every_route(model_dir: str) -> None:
    samples = load_samples(model_dir)
    succeeding = {s.path for s in samples if s.expect['status'] == 200}
    assert registered_routes(model_dir) <= succeeding
    statuses = {s.expect['status'] for s in samples}
    assert {400, 404} <= statuses


def test_classifier_samples_use_query_and_form_arguments() -> None:
    samples = load_samples(os.path.join(EXAMPLES_DIR, 'max-example-digit-classifier'))
    assert any(s.query.startswith('threshold=') and s.expect['status'] == 200 for s in samples)
    assert any(b'name="threshold"' in s.body and s.expect['status'] == 200 for s in samples)


@pytest.mark.parametrize('model_dir', MODEL_DIRS, ids=os.path.basename)
def test_samples_load_to_the_same_bytes_every_time(model_dir: str) -> None:
    assert load_samples(model_dir) == load_samples(model_dir)
    for sample in load_samples(model_dir):
        assert bool(sample.body) == ('Content-Type' in sample.headers), sample.name


@pytest.mark.parametrize('model_dir', MODEL_DIRS, ids=os.path.basename)
def test_model_files_are_small(model_dir: str) -> None:
    assets = os.path.join(model_dir, 'assets')
    total = sum(os.path.getsize(os.path.join(assets, name)) for name in os.listdir(assets))
    assert total <= MAX_ASSETS_BYTES


@pytest.mark.parametrize('sample', SAMPLES, ids=SAMPLE_IDS)
def test_sample_over_http(model_server: ModelServer, sample: SampleRequest) -> None:
    status, content_type, body = send_sample(sample, port=ModelServer.PORT)
    check_expected(sample, status, content_type, body)


@pytest.mark.parametrize('sample', SAMPLES, ids=SAMPLE_IDS)
def test_sample_with_curl(model_server: ModelServer, sample: SampleRequest, tmp_path) -> None:
    body_path = str(tmp_path / 'body')
    command = (['curl', '--silent', '--show-error', '--max-time', '60', '--output', body_path,
                '--write-out', '%{http_code} %{content_type}']
               + curl_args(sample)
               + ['http://127.0.0.1:{}{}'.format(ModelServer.PORT, target(sample))])
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True, timeout=90)
    assert result.returncode == 0, result.stderr
    status, _, content_type = result.stdout.partition(' ')
    with open(body_path, 'rb') as body_file:
        check_expected(sample, int(status), content_type, body_file.read())


def test_png_decoder_undoes_every_row_filter() -> None:
    # The model's PNGs happen to use only some of the five filters; build one that uses all.
    width, height, channels = 3, 5, 3
    pixels = bytes((17 * i + 5 * (i // 9)) % 256 for i in range(width * height * channels))
    stride = width * channels
    filtered = bytearray()
    previous = bytes(stride)
    for row in range(height):
        line = pixels[row * stride:(row + 1) * stride]
        left = bytes(channels) + line[:-channels]
        upper_left = bytes(channels) + previous[:-channels]
        predictors = [
            [0] * stride,
            list(left),
            list(previous),
            [(a + b) // 2 for a, b in zip(left, previous)],
            [_paeth_reference(a, b, c) for a, b, c in zip(left, previous, upper_left)],
        ]
        filtered.append(row)  # row i uses filter type i
        filtered += bytes((x - p) % 256 for x, p in zip(line, predictors[row]))
        previous = line
    png = _png_chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0))
    png += _png_chunk(b'IDAT', zlib.compress(bytes(filtered))) + _png_chunk(b'IEND', b'')
    assert decode_png(b'\x89PNG\r\n\x1a\n' + png) == (width, height, channels, pixels)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))


def _paeth_reference(left: int, up: int, upper_left: int) -> int:
    # As written in the PNG specification, section 9.4.
    p = left + up - upper_left
    pa, pb, pc = abs(p - left), abs(p - up), abs(p - upper_left)
    if pa <= pb and pa <= pc:
        return left
    return up if pb <= pc else upper_left
