import logging
from typing import Dict, List

from maxfw.model import MAXModelWrapper
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from config import DEFAULT_LABELS_PATH, MODEL_META_DATA

logger = logging.getLogger(__name__)

DECIMALS = 4  # rounded so results are stable across Python versions


class ModelWrapper(MAXModelWrapper):

    MODEL_META_DATA = MODEL_META_DATA

    def __init__(self, path: str = DEFAULT_LABELS_PATH) -> None:
        logger.info('Loading model')
        with open(path) as labels_file:
            self.labels: List[str] = [line.strip() for line in labels_file if line.strip()]
        if self.labels != ['positive', 'negative']:
            raise ValueError('{}: expected the labels positive and negative'.format(path))
        # Reads the VADER lexicon files bundled with the package.
        self.analyzer = SentimentIntensityAnalyzer()
        logger.info('Loaded model')

    def _predict(self, texts: List[str]) -> List[float]:
        return [self.analyzer.polarity_scores(text)['compound'] for text in texts]

    def _post_process(self, compound_scores: List[float]) -> List[Dict[str, float]]:
        predictions = []
        for compound in compound_scores:
            positive = round((compound + 1.0) / 2.0, DECIMALS)
            predictions.append({'positive': positive, 'negative': round(1.0 - positive, DECIMALS)})
        return predictions
