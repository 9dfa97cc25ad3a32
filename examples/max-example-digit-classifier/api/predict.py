from flask import abort
from maxfw.core import MAX_API, CustomMAXAPI, PredictAPI
from werkzeug.datastructures import FileStorage

from api.restful import fields
from core.model import ModelWrapper, read_image

# Loading the weights here makes `import api` the cold start, as in every MAX image.
model_wrapper = ModelWrapper()

# === Labels API

model_label = MAX_API.model('ModelLabel', {
    'id': fields.String(required=True, description='Class label identifier'),
    'name': fields.String(required=True, description='Class label'),
})

labels_response = MAX_API.model('LabelsResponse', {
    'count': fields.Integer(required=True, description='Number of class labels'),
    'labels': fields.List(fields.Nested(model_label),
                          description='Class labels that the model can predict'),
})


class ModelLabelsAPI(CustomMAXAPI):

    @MAX_API.doc('get_labels')
    @MAX_API.marshal_with(labels_response)
    def get(self):
        """Return the labels that the model can predict"""
        labels = [{'id': str(index), 'name': name} for index, name in enumerate(model_wrapper.labels)]
        return {'count': len(labels), 'labels': labels}


# === Predict API

input_parser = MAX_API.parser()
input_parser.add_argument('image', type=FileStorage, location='files', required=True,
                          help='An image of one digit (PNG or JPEG), dark on light or light on dark')
input_parser.add_argument('threshold', type=float, default=0.0,
                          help='Leave out labels with a probability below this value, in [0, 1] '
                               '(default: 0, the top 3 labels)')

label_prediction = MAX_API.model('LabelPrediction', {
    'label_id': fields.String(required=True, description='Class label identifier'),
    'label': fields.String(required=True, description='Class label'),
    'probability': fields.Float(required=True, description='Predicted probability of the label'),
})

predict_response = MAX_API.model('ModelPredictResponse', {
    'status': fields.String(required=True, description='Response status message'),
    'predictions': fields.List(fields.Nested(label_prediction),
                               description='Up to 3 labels, most probable first'),
})


class ModelPredictAPI(PredictAPI):

    @MAX_API.doc('predict')
    @MAX_API.expect(input_parser)
    @MAX_API.marshal_with(predict_response)
    def post(self):
        """Classify the digit in an image"""
        args = input_parser.parse_args()
        threshold = args['threshold']
        if not 0.0 <= threshold <= 1.0:
            abort(400, 'threshold must be between 0 and 1, got {}'.format(threshold))
        try:
            image = read_image(args['image'].read())
        except ValueError:
            abort(400, 'Please submit a valid image in PNG or JPEG format')

        predictions = model_wrapper.predict(image)
        return {'status': 'ok',
                'predictions': [p for p in predictions if p['probability'] >= threshold]}
