"""A MAX model's own server, as ``python app.py`` starts it, on a chosen loopback port.

MAX apps call ``max_app.run()``, which serves on 0.0.0.0:5000 with Werkzeug's threaded server.
The benchmark needs a free port (other processes may hold 5000) and the time the app took to
build, so this runs ``app.py`` as ``__main__`` from the current directory with only the address
changed, and writes ``app built in SECONDS`` to stderr just before the server starts.
"""

import argparse
import os
import runpy
import sys
import time

STARTED = time.perf_counter()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()

    from maxfw.core.app import MAXApp

    serve = MAXApp.run

    def serve_on_loopback(app: MAXApp, host: str = "0.0.0.0", port: int = 5000) -> None:
        sys.stderr.write("app built in %.6f\n" % (time.perf_counter() - STARTED))
        sys.stderr.flush()
        serve(app, "127.0.0.1", args.port)

    MAXApp.run = serve_on_loopback
    sys.path.insert(0, os.getcwd())  # as `python app.py` has the app's directory first
    runpy.run_path("app.py", run_name="__main__")


if __name__ == "__main__":
    main()
