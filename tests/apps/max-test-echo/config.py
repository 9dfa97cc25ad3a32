API_TITLE = 'MAX Test Echo'
API_DESC = 'Echoes requests and returns chosen responses'
API_VERSION = '0.1.0'
MODEL_META_DATA = {'id': 'max-test-echo', 'name': 'Test echo', 'description': API_DESC,
                   'type': 'Test', 'source': 'tests', 'license': 'Apache-2.0'}
