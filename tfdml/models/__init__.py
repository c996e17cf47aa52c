"""Embedding models with selectable taps (Vo & Hays) and their backbones."""
from tfdml.models.backbones import backbone_names, block_layer_names, build_backbone, preprocessing_mode
from tfdml.models.bninception import bninception
from tfdml.models.embedding_model import DEFAULT_TAP, POOLINGS, EmbeddingModel
from tfdml.models.googlenet import googlenet
from tfdml.models.layers import GrayToRGB, L2Normalization, PixelPreprocessing
from tfdml.models.reinitialize import reinitialize_layers
from tfdml.models.resnet import resnet18, resnet50
from tfdml.models.small_cnn import small_cnn
from tfdml.models.vgg16_bn import vgg16_bn

__all__ = [
    "DEFAULT_TAP",
    "POOLINGS",
    "EmbeddingModel",
    "GrayToRGB",
    "L2Normalization",
    "PixelPreprocessing",
    "backbone_names",
    "block_layer_names",
    "bninception",
    "build_backbone",
    "googlenet",
    "preprocessing_mode",
    "reinitialize_layers",
    "resnet18",
    "resnet50",
    "small_cnn",
    "vgg16_bn",
]
