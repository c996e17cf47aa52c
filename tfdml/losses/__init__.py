"""Deep-metric-learning losses, all called as `loss(labels, embeddings)`.

Build one by class or by name: `tfdml.losses.get("triplet", margin=0.2)`;
`tfdml.losses.names()` lists the registered names.
"""
from tfdml.losses.angular import AngularLoss
from tfdml.losses.base import MetricLoss
from tfdml.losses.contrastive import ContrastiveLoss
from tfdml.losses.generalized_lifted import GeneralizedLiftedStructureLoss
from tfdml.losses.histogram import HistogramLoss
from tfdml.losses.lifted import LiftedStructureLoss
from tfdml.losses.margin import MarginBeta, MarginLoss
from tfdml.losses.multi_similarity import MultiSimilarityLoss
from tfdml.losses.npair import NPairLoss
from tfdml.losses.quadruplet import QuadrupletLoss
from tfdml.losses.registry import get, get_class, names
from tfdml.losses.snr import SNRLoss
from tfdml.losses.state import attach_loss_state
from tfdml.losses.triplet import TripletLoss

__all__ = [
    "MetricLoss",
    "TripletLoss",
    "LiftedStructureLoss",
    "NPairLoss",
    "MultiSimilarityLoss",
    "ContrastiveLoss",
    "MarginBeta",
    "MarginLoss",
    "GeneralizedLiftedStructureLoss",
    "AngularLoss",
    "HistogramLoss",
    "QuadrupletLoss",
    "SNRLoss",
    "get",
    "get_class",
    "names",
    "attach_loss_state",
]
