# Flask settings
DEBUG = False

# Settings read by flask-restplus (maxfw <= 1.1.3) and flask-restx (maxfw >= 1.1.4)
RESTPLUS_MASK_SWAGGER = False
RESTX_MASK_SWAGGER = False
SWAGGER_UI_DOC_EXPANSION = 'none'

# API metadata
API_TITLE = 'MAX Example Image Upscaler'
API_DESC = 'Double the resolution of an image: Lanczos resampling followed by an unsharp mask.'
API_VERSION = '1.0.0'

# The model, relative to the working directory like every MAX image
DEFAULT_MODEL_PATH = 'assets/upscaler.json'

MODEL_META_DATA = {
    'id': 'max-example-image-upscaler',
    'name': 'Lanczos 2x upscaler with unsharp masking',
    'description': 'Upscales an image by a factor of 2 with a Lanczos filter, then restores edge '
                   'contrast with an unsharp mask tuned for the enlargement.',
    'type': 'Image-To-Image Translation Or Transformation',
    'source': 'https://pillow.readthedocs.io/en/stable/reference/ImageFilter.html',
    'license': 'Apache V2'
}
