"""Serve the IBM MAX model in this directory on the serverless platform the environment names.

Copied into a MAX model image next to its ``app.py``, with the ``serverless_max`` package beside
it, and started as ``python openwhisk.py``. The name is kept from when the runtime served
Apache OpenWhisk alone: without other platforms' variables it is still an OpenWhisk action.
``python openwhisk.py --help`` lists the options; ``serverless_max/main.py`` how the platform is
chosen.
"""

from serverless_max.main import main

if __name__ == "__main__":
    main()
