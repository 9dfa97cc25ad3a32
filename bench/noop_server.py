"""A model endpoint that does nothing, as fast as one process can: the far end for measuring a batch
client's own ceiling, so that every millisecond measured is the client's.

    python bench/noop_server.py PORT

GET .../swagger.json answers a MAX image model's Swagger document (one `image` file field on POST
/model/predict); every POST reads its whole body and answers a fixed prediction. aiohttp's server
(HTTP/1.1 keep-alive, its C parser) rather than a model's Flask stack, which would be the ceiling
long before the client is.
"""

import sys

from aiohttp import web

SWAGGER = {
    "swagger": "2.0",
    "basePath": "/",
    "info": {"title": "No-op model", "version": "1.0.0"},
    "paths": {
        "/model/predict": {
            "post": {
                "operationId": "predict",
                "consumes": ["multipart/form-data"],
                "parameters": [{"name": "image", "in": "formData", "type": "file", "required": True}],
                "responses": {"200": {"description": "Success"}},
            }
        }
    },
}
PREDICTION = b'{"status": "ok", "predictions": [{"label": "no-op", "probability": 1.0}]}'


async def swagger(request: web.Request) -> web.Response:
    return web.json_response(SWAGGER)


async def predict(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=PREDICTION, content_type="application/json")


def main() -> None:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_get("/swagger.json", swagger)
    app.router.add_get("/{prefix:.*}/swagger.json", swagger)
    app.router.add_post("/{path:.*}", predict)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None, backlog=1024)


if __name__ == "__main__":
    main()
