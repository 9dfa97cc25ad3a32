from flask import abort, send_file
from maxfw.core import MAX_API, PredictAPI
from werkzeug.datastructures import FileStorage

from core.model import ModelWrapper

# Loading the settings here makes `import api` the cold start, as in every MAX image.
model_wrapper = ModelWrapper()

input_parser = MAX_API.parser()
input_parser.add_argument('image', type=FileStorage, location='files', required=True,
                          help='An image (PNG or JPEG) of at most {0}x{0} pixels'.format(
                              model_wrapper.max_input_side))


class ModelPredictAPI(PredictAPI):

    @MAX_API.doc('predict')
    @MAX_API.expect(input_parser)
    def post(self):
        """Return the image enlarged 2x, as PNG"""
        args = input_parser.parse_args()
        try:
            image = model_wrapper.read_image(args['image'].read())
        except ValueError as error:
            abort(400, str(error))
        # No attachment file name: that argument of send_file was removed in Flask 2.2.
        return send_file(model_wrapper.predict(image), mimetype='image/png')
