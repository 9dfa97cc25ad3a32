import base64
import gzip
import json
import os
import sys
import time

from flask import Response, request
from maxfw.core import MAX_API, MetadataAPI, PredictAPI

import core.model  # noqa: F401  (loads the model, as MAX images do on `import api`)
from config import MODEL_META_DATA


def describe_request():
    """Everything the app saw of the request, so tests can compare it."""
    return {
        'method': request.method,
        'path': request.path,
        'query': request.query_string.decode('latin-1'),
        'args': request.args.to_dict(flat=False),
        'headers': dict((k.lower(), v) for k, v in request.headers.items()),
        'content_type': request.content_type,
        'content_length': request.content_length,
        'body_base64': base64.b64encode(request.get_data()).decode('ascii'),
        'ow_env': dict((k, v) for k, v in os.environ.items() if k.startswith('__OW_')),
        'activation': request.environ.get('openwhisk.activation'),
    }


class ModelMetadataAPI(MetadataAPI):
    def get(self):
        return MODEL_META_DATA


class ModelPredictAPI(PredictAPI):
    def post(self):
        files = dict((name, len(f.read())) for name, f in request.files.items())
        return {'status': 'ok', 'files': files, 'form': request.form.to_dict(), 'request': describe_request()}


def register_test_routes(app):
    methods = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS']

    @app.route('/echo', methods=methods)
    @app.route('/echo/<path:rest>', methods=methods)
    def echo(rest=''):
        return Response(json.dumps(describe_request()), mimetype='application/json')

    @app.route('/respond', methods=['GET', 'POST'])
    def respond():
        """Answers with the status, content type and body the query asks for."""
        body = base64.b64decode(request.args.get('body_base64', ''))
        if 'repeat' in request.args:
            body = body * int(request.args['repeat'])
        response = Response(body, status=int(request.args.get('status', '200')))
        if 'type' in request.args:
            response.headers['Content-Type'] = request.args['type']
        else:
            del response.headers['Content-Type']
        for cookie in request.args.getlist('cookie'):
            response.headers.add('Set-Cookie', cookie)
        if request.args.get('gzip'):
            response.set_data(gzip.compress(body))
            response.headers['Content-Encoding'] = 'gzip'
        return response

    @app.route('/fail', methods=['GET', 'POST'])
    def fail():
        raise ValueError('the model crashed')

    @app.route('/bad-header', methods=['GET'])
    def bad_header():
        """A header value holding a byte decoded with surrogateescape: no HTTP response can carry it."""
        response = Response('{}', mimetype='application/json')
        response.headers['X-Undecodable'] = b'caf\xe9'.decode('utf-8', 'surrogateescape')
        return response

    @app.route('/log', methods=['POST'])
    def log_lines():
        print('to stdout: ' + request.get_data(as_text=True))
        sys.stderr.write('to stderr: ' + request.get_data(as_text=True) + '\n')
        return Response('{"logged": true}', mimetype='application/json')

    @app.route('/slow', methods=['POST'])
    def slow():
        tag = request.get_data(as_text=True)
        time.sleep(float(request.args.get('seconds', '0.2')))
        # The process id tells which of several action processes answered.
        return Response(json.dumps({'tag': tag, 'pid': os.getpid(), 'request': describe_request()}),
                        mimetype='application/json')
