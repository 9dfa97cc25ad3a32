from flask import abort
from maxfw.core import MAX_API, PredictAPI

from api.restful import fields
from core.model import ModelWrapper

# Loading the lexicon here makes `import api` the cold start, as in every MAX image.
model_wrapper = ModelWrapper()

input_model = MAX_API.model('ModelInput', {
    'text': fields.List(fields.String, required=True,
                        description='Sentences to score for positive or negative sentiment'),
})

label_prediction = MAX_API.model('LabelPrediction', {
    label: fields.Float(required=True, description='Probability that the sentiment is ' + label)
    for label in model_wrapper.labels
})

predict_response = MAX_API.model('ModelPredictResponse', {
    'status': fields.String(required=True, description='Response status message'),
    'predictions': fields.List(fields.Nested(label_prediction),
                               description='One prediction per input sentence, in input order'),
})


class ModelPredictAPI(PredictAPI):

    @MAX_API.doc('predict')
    @MAX_API.expect(input_model, validate=True)
    @MAX_API.marshal_with(predict_response)
    def post(self):
        """Score each sentence for positive and negative sentiment"""
        texts = MAX_API.payload['text']
        if not texts:
            abort(400, 'An empty list was provided; please supply at least one sentence in "text"')
        return {'status': 'ok', 'predictions': model_wrapper.predict(texts)}
