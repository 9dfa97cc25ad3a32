# Settings read by flask-restplus (maxfw <= 1.1.3) and flask-restx (maxfw >= 1.1.4)
RESTPLUS_MASK_SWAGGER = False
RESTX_MASK_SWAGGER = False

API_TITLE = 'MAX Test Sleep'
API_DESC = 'Answers every prediction after a fixed time'
API_VERSION = '0.1.0'
MODEL_META_DATA = {'id': 'max-test-sleep', 'name': 'Test sleep', 'description': API_DESC,
                   'type': 'Test', 'source': 'tests', 'license': 'Apache-2.0'}
