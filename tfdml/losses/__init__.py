"""Deep-metric-learning losses, all called as `loss(labels, embeddings)`.

Build one by class or by name: `tfdml.losses.get("triplet", margin=0.2)`;
`tfdml.losses.names()` lists the registered names.
"""
from tfdml.losses.angular import AngularLoss
from tfdml.losses.arcface import ArcFaceLoss
from tfdml.losses.base import MetricLoss
from tfdml.losses.contrastive import ContrastiveLoss
from tfdml.losses.generalized_lifted import GeneralizedLiftedStructureLoss
from tfdml.losses.histogram import HistogramLoss
from tfdml.losses.lifted import LiftedStructureLoss
from tfdml.losses.margin import MarginLoss
from tfdml.losses.multi_similarity import MultiSimilarityLoss
from tfdml.losses.normalized_softmax import NormalizedSoftmaxLoss
from tfdml.losses.npair import NPairLoss
from tfdml.losses.proxies import ProxyLoss
from tfdml.losses.proxy_nca import ProxyNCALoss
from tfdml.losses.quadruplet import QuadrupletLoss
from tfdml.losses.registry import get, get_class, names
from tfdml.losses.snr import SNRLoss
from tfdml.losses.soft_triple import SoftTripleLoss
from tfdml.losses.state import attach_loss_state
from tfdml.losses.triplet import TripletLoss
from tfdml.losses.variables import LossVariable

__all__ = [
    "MetricLoss",
    "TripletLoss",
    "LiftedStructureLoss",
    "NPairLoss",
    "MultiSimilarityLoss",
    "ContrastiveLoss",
    "MarginLoss",
    "LossVariable",
    "GeneralizedLiftedStructureLoss",
    "AngularLoss",
    "HistogramLoss",
    "QuadrupletLoss",
    "SNRLoss",
    "ProxyLoss",
    "ProxyNCALoss",
    "SoftTripleLoss",
    "ArcFaceLoss",
    "NormalizedSoftmaxLoss",
    "get",
    "get_class",
    "names",
    "attach_loss_state",
]
