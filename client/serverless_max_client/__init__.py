"""serverless-max: batch predictions against a deployed MAX model, at the platform's limit."""

__version__ = "0.1.0"
