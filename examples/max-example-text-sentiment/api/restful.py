"""The REST toolkit maxfw is built on: flask-restplus (maxfw <= 1.1.3) or flask-restx (later).

Some MAX base images install both packages, so trying one import after the other could
mix them; models and fields must come from the package that made maxfw's namespace.
"""
import importlib

from maxfw.core import MAX_API

fields = importlib.import_module(type(MAX_API).__module__.split('.')[0]).fields
