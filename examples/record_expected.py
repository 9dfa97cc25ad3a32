"""Re-record the expected responses of the example models from their own servers.

For each model it runs `python app.py` (maxfw on port 5000), sends every case of
samples/requests.json and rewrites the files that its "expect" names under "json" or
"png". Status and Content-Type stay as written in the manifest: a case whose response
differs there is reported and not recorded, since those are decisions, not recordings.

    python examples/record_expected.py [--python PYTHON] [MODEL_DIR ...]
"""
import argparse
import collections
import json
import os
import sys
from typing import List

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, 'tests'))
import samples  # noqa: E402  (tests/samples.py, found through the path set above)


def record_model(model_dir: str, python: str) -> List[str]:
    """Record one model's expectations; returns the problems found."""
    problems = []
    with samples.ModelServer(model_dir, python=python):
        for sample in samples.load_samples(model_dir):
            status, content_type, body = samples.send_sample(sample)
            expect = sample.expect
            if status != expect['status'] or (
                    'content_type' in expect and
                    samples.media_type(content_type) != samples.media_type(expect['content_type'])):
                problems.append('{}/{}: got {} {!r}, the manifest expects {} {!r}: {}'.format(
                    os.path.basename(model_dir), sample.name, status, content_type,
                    expect['status'], expect.get('content_type'), body[:200]))
                continue
            if 'json' in expect:
                document = json.loads(body.decode('utf-8'), object_pairs_hook=collections.OrderedDict)
                with open(os.path.join(model_dir, 'samples', expect['json']), 'w', encoding='utf-8') as out:
                    json.dump(document, out, indent=2, ensure_ascii=False)
                    out.write('\n')
            elif 'png' in expect:
                with open(os.path.join(model_dir, 'samples', expect['png']), 'wb') as out:
                    out.write(body)
            else:
                try:
                    samples.check_expected(sample, status, content_type, body)
                except AssertionError as error:
                    problems.append(str(error))
                    continue
            print('{}/{}: {}'.format(os.path.basename(model_dir), sample.name, status))
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--python', default=sys.executable,
                        help='interpreter that runs the models (default: this one)')
    parser.add_argument('model_dirs', nargs='*', metavar='MODEL_DIR',
                        help='example directories (default: all examples)')
    args = parser.parse_args()
    problems = []
    for model_dir in [os.path.abspath(d) for d in args.model_dirs] or samples.example_model_dirs():
        problems += record_model(model_dir, args.python)
    for problem in problems:
        print('NOT RECORDED: ' + problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main())
