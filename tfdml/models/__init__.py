"""Embedding models with selectable taps (Vo & Hays) and their backbones."""
from tfdml.models.backbones import backbone_names, build_backbone, preprocessing_mode
from tfdml.models.embedding_model import DEFAULT_TAP, POOLINGS, EmbeddingModel
from tfdml.models.googlenet import googlenet
from tfdml.models.layers import L2Normalization, PixelPreprocessing
from tfdml.models.small_cnn import small_cnn

__all__ = [
    "DEFAULT_TAP",
    "POOLINGS",
    "EmbeddingModel",
    "L2Normalization",
    "PixelPreprocessing",
    "backbone_names",
    "build_backbone",
    "googlenet",
    "preprocessing_mode",
    "small_cnn",
]
