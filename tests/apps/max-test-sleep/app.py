"""A MAX-style image model whose prediction takes a fixed time (50 ms unless TEST_PREDICT_SECONDS
says otherwise) and does nothing else: a model of known speed, to load a platform with."""
from maxfw.core import MAXApp

from api import ModelMetadataAPI, ModelPredictAPI
from config import API_DESC, API_TITLE, API_VERSION

max_app = MAXApp(API_TITLE, API_DESC, API_VERSION)
max_app.add_api(ModelMetadataAPI, '/metadata')
max_app.add_api(ModelPredictAPI, '/predict')
max_app.run()
