# Flask settings
DEBUG = False

# Settings read by flask-restplus (maxfw <= 1.1.3) and flask-restx (maxfw >= 1.1.4)
RESTPLUS_MASK_SWAGGER = False
RESTX_MASK_SWAGGER = False
SWAGGER_UI_DOC_EXPANSION = 'none'

# API metadata
API_TITLE = 'MAX Example Digit Classifier'
API_DESC = 'Classify an image of a single handwritten digit (0-9). A softmax regression trained ' \
           'on the scikit-learn 8x8 digits data set.'
API_VERSION = '1.0.0'

# The model, relative to the working directory like every MAX image
DEFAULT_MODEL_PATH = 'assets/digit-classifier.json'

MODEL_META_DATA = {
    'id': 'max-example-digit-classifier',
    'name': 'Softmax regression digit classifier',
    'description': 'Softmax regression over 8x8 grayscale digit images, trained on the UCI '
                   'optical recognition of handwritten digits data bundled with scikit-learn.',
    'type': 'Image Classification',
    'source': 'https://scikit-learn.org/stable/modules/generated/sklearn.datasets.load_digits.html',
    'license': 'Apache V2'
}
