"""pytest-vaccbench: accuracy gates for image classifiers deployed on VastAI accelerators."""

__version__ = "0.1.0"
