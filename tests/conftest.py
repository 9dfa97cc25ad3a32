import os
import sys

# The shim and the local endpoint are top-level scripts, imported by the in-process tests.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
