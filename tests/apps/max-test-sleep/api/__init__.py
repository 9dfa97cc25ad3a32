import os
import time

from maxfw.core import MAX_API, MetadataAPI, PredictAPI
from werkzeug.datastructures import FileStorage

from config import MODEL_META_DATA

PREDICT_SECONDS = float(os.environ.get('TEST_PREDICT_SECONDS', '0.05'))

# Declared like a real MAX image model's input, so the Swagger document names the file field.
input_parser = MAX_API.parser()
input_parser.add_argument('image', type=FileStorage, location='files', required=True,
                          help='Any file; only its size is looked at')


class ModelMetadataAPI(MetadataAPI):
    def get(self):
        return MODEL_META_DATA


class ModelPredictAPI(PredictAPI):

    @MAX_API.doc('predict')
    @MAX_API.expect(input_parser)
    def post(self):
        """Wait PREDICT_SECONDS, then answer with the uploaded file's size"""
        args = input_parser.parse_args()
        size = len(args['image'].read())
        time.sleep(PREDICT_SECONDS)
        return {'status': 'ok', 'predictions': [{'bytes': size}]}
