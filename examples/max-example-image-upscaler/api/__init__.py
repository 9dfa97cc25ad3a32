from .metadata import ModelMetadataAPI  # noqa
from .predict import ModelPredictAPI  # noqa
