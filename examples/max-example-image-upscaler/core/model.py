import io
import json
import logging

from PIL import Image, ImageFilter
from maxfw.model import MAXModelWrapper

from config import DEFAULT_MODEL_PATH, MODEL_META_DATA

logger = logging.getLogger(__name__)


class ModelWrapper(MAXModelWrapper):

    MODEL_META_DATA = MODEL_META_DATA

    def __init__(self, path: str = DEFAULT_MODEL_PATH) -> None:
        logger.info('Loading model from %s', path)
        with open(path) as settings_file:
            settings = json.load(settings_file)
        self.scale = int(settings['scale'])
        mask = settings['unsharp_mask']
        self.sharpen = ImageFilter.UnsharpMask(
            radius=float(mask['radius']), percent=int(mask['percent']), threshold=int(mask['threshold']))
        self.max_input_side = int(settings['max_input_side'])
        logger.info('Loaded model')

    def read_image(self, image_data: bytes) -> Image.Image:
        """Decode an input image; ValueError with a message for the client when it is unusable."""
        try:
            image = Image.open(io.BytesIO(image_data))
        except (OSError, ValueError, Image.DecompressionBombError):
            raise ValueError('Please submit a valid image in PNG or JPEG format')
        # Checked before decoding the pixels, which is where large images cost memory.
        if max(image.size) > self.max_input_side:
            raise ValueError('Images larger than {0}x{0} pixels are not accepted, got {1}x{2}'.format(
                self.max_input_side, image.width, image.height))
        try:
            image.load()
        except (OSError, ValueError, Image.DecompressionBombError):
            raise ValueError('Please submit a valid image in PNG or JPEG format')
        return image

    def _pre_process(self, image: Image.Image) -> Image.Image:
        # Palette, grayscale and transparent images are all enlarged as plain RGB.
        return image.convert('RGB')

    def _predict(self, image: Image.Image) -> Image.Image:
        enlarged = image.resize((image.width * self.scale, image.height * self.scale), Image.LANCZOS)
        return enlarged.filter(self.sharpen)

    def _post_process(self, image: Image.Image) -> io.BytesIO:
        png = io.BytesIO()
        image.save(png, format='PNG')
        png.seek(0)
        return png
