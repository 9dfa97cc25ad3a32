from .metadata import ModelMetadataAPI  # noqa
from .predict import ModelLabelsAPI, ModelPredictAPI  # noqa
