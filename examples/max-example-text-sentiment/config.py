# Flask settings
DEBUG = False

# Settings read by flask-restplus (maxfw <= 1.1.3) and flask-restx (maxfw >= 1.1.4)
RESTPLUS_MASK_SWAGGER = False
RESTX_MASK_SWAGGER = False
SWAGGER_UI_DOC_EXPANSION = 'none'

# API metadata
API_TITLE = 'MAX Example Text Sentiment Classifier'
API_DESC = 'Score English sentences as positive or negative with the VADER sentiment lexicon and rules.'
API_VERSION = '1.0.0'

# The class labels, relative to the working directory like every MAX image
DEFAULT_LABELS_PATH = 'assets/labels.txt'

MODEL_META_DATA = {
    'id': 'max-example-text-sentiment',
    'name': 'VADER sentiment classifier',
    'description': 'VADER (Valence Aware Dictionary and sEntiment Reasoner): a lexicon and rule-based '
                   'sentiment model attuned to social media text. Its compound score in [-1, 1] is '
                   'mapped linearly to a positive probability.',
    'type': 'Text Classification',
    'source': 'https://github.com/cjhutto/vaderSentiment',
    'license': 'MIT'
}
