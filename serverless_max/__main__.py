"""``python -m serverless_max``: the same as ``python openwhisk.py``."""

from .main import main

main()
