"""An app that answers every request, whatever its method and path, with what the server handed
it: method, path, query, headers and body, as base64 JSON in the X-Wire-Echo response header (a
header, so that the answer to a HEAD request carries it too)."""
import base64
import json

from flask import Flask

app = Flask(__name__)


def wire_echo(environ, start_response):
    seen = {
        'method': environ['REQUEST_METHOD'],
        'path': environ['PATH_INFO'],
        'query': environ.get('QUERY_STRING', ''),
        'headers': dict((key, value) for key, value in environ.items()
                        if key.startswith('HTTP_') or key == 'CONTENT_TYPE'),
        'body_base64': base64.b64encode(environ['wsgi.input'].read()).decode('ascii'),
    }
    echo = base64.b64encode(json.dumps(seen, sort_keys=True).encode('utf-8')).decode('ascii')
    start_response('200 OK', [('X-Wire-Echo', echo), ('Content-Type', 'text/plain')])
    return [b'echoed\n']


# Every route, every method: the server's parse is what is under test, not Flask's routing.
app.wsgi_app = wire_echo
