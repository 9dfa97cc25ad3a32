"""serverless-max: one runtime that serves an IBM MAX model image on any serverless platform.

Copied into the model image next to its ``app.py`` and started by ``python openwhisk.py``, it
loads the model's own Flask app once and answers each platform's protocol by calling that app
directly through WSGI, so every route answers exactly like the model's own server.

- ``runtime``: what every platform shares: loading the app, the WSGI call, limits, errors, logs.
- ``openwhisk``: Apache OpenWhisk Docker actions (``POST /init``, ``POST /run``).
- ``http_service``: Knative Serving, Google Cloud Run, IBM Code Engine: plain HTTP on ``$PORT``.
- ``aws_lambda``: AWS Lambda container images: a custom runtime on the Lambda Runtime API.
- ``main``: the command line, and which platform the environment asks for.

Standard library only; Python 3.6 and later, Flask 1.0.2 / Werkzeug 0.14.1 and later.
"""

__version__ = "1.1.0"
