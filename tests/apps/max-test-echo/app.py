"""A MAX-style app whose routes echo and shape HTTP exchanges, to test the shim with."""
from maxfw.core import MAXApp

from api import ModelMetadataAPI, ModelPredictAPI, register_test_routes
from config import API_DESC, API_TITLE, API_VERSION

max_app = MAXApp(API_TITLE, API_DESC, API_VERSION)
max_app.add_api(ModelMetadataAPI, '/metadata')
max_app.add_api(ModelPredictAPI, '/predict')
register_test_routes(max_app.app)
max_app.run()
