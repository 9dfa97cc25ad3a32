import os
import time

# The cold start of a real model: the shim must have run this before it listens.
LOAD_STARTED = time.time()
time.sleep(float(os.environ.get('TEST_MODEL_LOAD_SECONDS', '0')))
if os.environ.get('TEST_MODEL_FAIL_TO_LOAD'):
    raise RuntimeError('weights not found in assets/ or at postgres://model:s3cret-password@db/weights')
print('test model loaded')
