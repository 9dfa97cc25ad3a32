import io
import json
import logging
from typing import Dict, List

import numpy as np
from PIL import Image, ImageOps, ImageStat
from maxfw.model import MAXModelWrapper

from config import DEFAULT_MODEL_PATH, MODEL_META_DATA

logger = logging.getLogger(__name__)

SIDE = 8  # the training images are 8x8
STROKE_MAX = 16.0  # the training pixel scale: 0 background .. 16 full stroke
TOP_K = 3
DECIMALS = 4  # rounded so results do not depend on the numpy/Pillow build


def read_image(image_data: bytes) -> Image.Image:
    """Decode PNG/JPEG/... bytes; ValueError when they are not a readable image."""
    try:
        image = Image.open(io.BytesIO(image_data))
        image.load()
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise ValueError('not a readable image: {}'.format(error))
    return image


class ModelWrapper(MAXModelWrapper):

    MODEL_META_DATA = MODEL_META_DATA

    def __init__(self, path: str = DEFAULT_MODEL_PATH) -> None:
        logger.info('Loading model from %s', path)
        with open(path) as model_file:
            model = json.load(model_file)
        self.labels: List[str] = model['labels']
        self.weights = np.array(model['weights'], dtype=np.float64)
        self.bias = np.array(model['bias'], dtype=np.float64)
        if self.weights.shape != (SIDE * SIDE, len(self.labels)):
            raise ValueError('{}: weights have shape {}'.format(path, self.weights.shape))
        logger.info('Loaded model')

    def _pre_process(self, image: Image.Image) -> np.ndarray:
        gray = image.convert('L')
        # The training digits are bright strokes on a dark background; scans and
        # drawings are usually dark on light, so flip those.
        if ImageStat.Stat(gray).mean[0] > 127.5:
            gray = ImageOps.invert(gray)
        # Pad to a square around the centre so the digit keeps its proportions.
        side = max(gray.size)
        square = Image.new('L', (side, side), 0)
        square.paste(gray, ((side - gray.width) // 2, (side - gray.height) // 2))
        # BOX averages whole source areas, the closest match to how the data set was
        # made (counting set pixels in 4x4 blocks of a 32x32 bitmap).
        small = square.resize((SIDE, SIDE), Image.BOX)
        return np.asarray(small, dtype=np.float64).reshape(SIDE * SIDE) * (STROKE_MAX / 255.0)

    def _predict(self, pixels: np.ndarray) -> np.ndarray:
        scores = pixels.dot(self.weights) + self.bias
        exponentials = np.exp(scores - scores.max())
        return exponentials / exponentials.sum()

    def _post_process(self, probabilities: np.ndarray) -> List[Dict[str, object]]:
        best_first = np.argsort(-probabilities, kind='stable')[:TOP_K]
        return [{'label_id': str(index),
                 'label': self.labels[index],
                 'probability': round(float(probabilities[index]), DECIMALS)}
                for index in best_first]
