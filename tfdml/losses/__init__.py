"""Deep-metric-learning losses, all called as `loss(labels, embeddings)`.

Build one by class or by name: `tfdml.losses.get("triplet", margin=0.2)`;
`tfdml.losses.names()` lists the registered names.

Layout: `base` (`MetricLoss`, input validation), `ops` (masked reductions),
`pairs` (`PairMatrices`, the Embedding Expansion seam), `mining` (the triplet
family's one mining path), `miners` (parametric pair and triplet miners), `state` (trainable loss state), `proxies` (base of the
proxy losses), `registry`, `distributed`, and one module per loss holding its
formula.

Every loss class declares `config_args` (its constructor arguments, saved by
`get_config`), `supports_expansion` (takes `expansion=`) and `default_pooling`
(EE pooling when `expansion.pooling` is None: "anchor" for triplet, margin,
quadruplet and SNR, "class" for the other pair-based losses).

Every loss (via `MetricLoss`): rejects Keras' per-sample `reduction` (each
loss reduces over its own tuples as its docstring states); returns NaN when an
embedding is NaN or ±inf; returns 0 with a zero gradient for an empty batch;
checks the labels' length also in graphs with a dynamic batch size; and gives a
finite value and gradient for finite embeddings of any magnitude (metrics of raw
embeddings are computed without overflow, see `tfdml.distances` and
`tfdml.losses.pairs.pair_matrices`; the squared-norm regulariser saturates, see
`tfdml.losses.ops.squared_norm_penalty`).

Argument vocabulary — one name per concept, the same in every loss:

- `margin`: the loss's (first) hinge margin (triplet m, margin-loss α,
  quadruplet γ1, SNR, lifted m, ArcFace and sub-center ArcFace m in radians,
  SoftTriple δ, Proxy-Anchor δ, CosFace m, Circle m, tuplet-margin β in
  radians, L-Softmax and SphereFace's integer multiplicative m);
  `second_margin`: quadruplet γ2; `pos_margin` / `neg_margin`: contrastive,
  intra-pair variance ε⁺ / ε⁻, threshold-consistent margin m⁺ / m⁻
  (`pos_weight` / `neg_weight`: its λ⁺ / λ⁻).
- `normalize`: L2-normalise the embeddings before the loss (defaults follow
  each paper); the L2 normalisation is `tfdml.distances.l2_normalize`.
- `embedding_reg`: weight of the loss's embedding regulariser (N-pair, angular,
  generalized lifted: mean ‖x‖²; SNR: mean |Σ_m x_m|).
- `embedding_scale`: multiplier of the (normalised) embeddings — and proxies —
  before distances (triplet, ProxyNCA).
- `scale`: multiplier of logits (ArcFace, CosFace, tuplet-margin s, SoftTriple λ,
  Circle γ, NCA's softmax scale, L-Softmax and SphereFace's PML `scale`);
  `temperature`: divisor of logits (normalised softmax T, the triplet "nca" form,
  SupCon and NT-Xent τ, Smooth-AP τ; the manifold loss's Gaussian-kernel divisor).
- `mining`, `rho`: triplet miner (a name, or `{"name": ..., **arguments}` for
  "batch_easy_hard" and "angular") and ρ-regularisation probability;
  `pair_mining`: the pair miner of every pair-based loss ("hdc", "pair_margin",
  "uniform_histogram", "batch_easy_hard"; `tfdml.losses.miners`), which keeps
  only the mined positive / negative pairs;
  `average_over`: what the triplet loss divides its sum by (triplets, active
  triplets, positive pairs, or nothing: "sum"), and SupCon's (anchors or active anchors).
- Where pytorch-metric-learning's form differs from the paper's, a named option
  selects it: SupCon `average_over="active_anchors"`, NT-Xent
  `denominator="negatives"`, sub-center ArcFace `monotonic=True`, P2SGrad
  `form="mse"`, PNP `variant="O", alpha=1`, dynamic soft margin `triplets="all",
  batch_histogram="counts", histogram_gradient=True`, VICReg
  `invariance_reduction="mean"` with `variance_reduction="mean"`.
- `softening`: L-Softmax and SphereFace's λ, the weight of cos θ_y blended into the
  target logit (annealed in their Caffe code, here a constant; 0 is the printed loss).
- `ee_form`: "paper" (default) or "pooled" — for the losses with their own
  printed EE equation (lifted EE eq. 12, multi-similarity EE eqs. 14–15);
  `plus_one`: multi-similarity's "1 +" inside the logs (False: EE eqs. 6, 15).
- `lr_multiplier`: learning-rate multiplier of the loss's trainable state (β,
  proxies); `num_classes`, `proxies_per_class`: class-indexed state.
- `expansion`: `tfdml.EmbeddingExpansion` (or None); `seed`: int seed of the
  loss's random draws or of its state's initialisation.
- Paper symbols where they are the concept: Proxy-Anchor `alpha`; multi-similarity `alpha`, `beta`,
  `base` (λ), `epsilon`; margin-loss `beta`, `nu`; SoftTriple `gamma`, `tau`;
  manifold loss `alpha` (random-walk weight), `lambda_c` (λ_C);
  angular `alpha_degrees`, `angular_weight`; histogram and dynamic soft margin
  `bins` (nodes), FastAP `bins` (intervals L); PNP `alpha`, `b`; ranked list
  `alpha`, `t_n`, `t_p` (T_n, T_p: multipliers of its weights' exponents), `balance` (λ);
  VICReg `gamma`, `epsilon` and `invariance_weight`, `variance_weight`,
  `covariance_weight` (λ, μ, ν).
- Named options for pytorch-metric-learning's forms of the ranking losses:
  Smooth-AP `include_query=True`, ranked list `form="pml"`.
"""
from tfdml.losses.angular import AngularLoss
from tfdml.losses.arcface import ArcFaceLoss
from tfdml.losses.base import MetricLoss
from tfdml.losses.circle import CircleLoss
from tfdml.losses.contrastive import ContrastiveLoss
from tfdml.losses.cosface import CosFaceLoss
from tfdml.losses.dynamic_soft_margin import DynamicSoftMarginLoss
from tfdml.losses.fastap import FastAPLoss
from tfdml.losses.generalized_lifted import GeneralizedLiftedStructureLoss
from tfdml.losses.histogram import HistogramLoss
from tfdml.losses.instance import InstanceLoss
from tfdml.losses.intra_pair_variance import IntraPairVarianceLoss
from tfdml.losses.large_margin_softmax import LargeMarginSoftmaxLoss
from tfdml.losses.lifted import LiftedStructureLoss
from tfdml.losses.manifold import ManifoldLoss
from tfdml.losses.margin import MarginLoss
from tfdml.losses.miners import AngularMiner, BatchEasyHardMiner, HDCMiner, PairMarginMiner, UniformHistogramMiner
from tfdml.losses.multi_similarity import MultiSimilarityLoss
from tfdml.losses.nca import NCALoss
from tfdml.losses.normalized_softmax import NormalizedSoftmaxLoss
from tfdml.losses.npair import NPairLoss
from tfdml.losses.ntxent import NTXentLoss
from tfdml.losses.p2sgrad import P2SGradLoss
from tfdml.losses.pnp import PNPLoss
from tfdml.losses.proxies import ProxyLoss
from tfdml.losses.proxy_anchor import ProxyAnchorLoss
from tfdml.losses.proxy_nca import ProxyNCALoss
from tfdml.losses.quadruplet import QuadrupletLoss
from tfdml.losses.ranked_list import RankedListLoss
from tfdml.losses.registry import get, get_class, names
from tfdml.losses.shared_triplets import SharedTripletLoss
from tfdml.losses.smooth_ap import SmoothAPLoss
from tfdml.losses.snr import SNRLoss
from tfdml.losses.soft_triple import SoftTripleLoss
from tfdml.losses.softmax import SoftmaxLoss
from tfdml.losses.sphereface import SphereFaceLoss
from tfdml.losses.state import LossStateFunctional, LossVariable, attach_loss_state
from tfdml.losses.sub_center_arcface import SubCenterArcFaceLoss
from tfdml.losses.supcon import SupConLoss
from tfdml.losses.threshold_consistent_margin import ThresholdConsistentMarginLoss
from tfdml.losses.triplet import TripletLoss
from tfdml.losses.tuplet_margin import TupletMarginLoss
from tfdml.losses.vicreg import VICRegLoss
from tfdml.losses.xbm import CrossBatchMemory, MemoryQueue

__all__ = [
    "MetricLoss",
    "TripletLoss",
    "LiftedStructureLoss",
    "NPairLoss",
    "MultiSimilarityLoss",
    "ContrastiveLoss",
    "MarginLoss",
    "LossVariable",
    "LossStateFunctional",
    "GeneralizedLiftedStructureLoss",
    "AngularLoss",
    "HistogramLoss",
    "QuadrupletLoss",
    "SharedTripletLoss",
    "SNRLoss",
    "ProxyLoss",
    "ProxyNCALoss",
    "SoftTripleLoss",
    "ArcFaceLoss",
    "NormalizedSoftmaxLoss",
    "SoftmaxLoss",
    "ProxyAnchorLoss",
    "CosFaceLoss",
    "SubCenterArcFaceLoss",
    "CircleLoss",
    "SupConLoss",
    "NTXentLoss",
    "TupletMarginLoss",
    "IntraPairVarianceLoss",
    "NCALoss",
    "InstanceLoss",
    "CrossBatchMemory",
    "MemoryQueue",
    "LargeMarginSoftmaxLoss",
    "SphereFaceLoss",
    "P2SGradLoss",
    "ManifoldLoss",
    "FastAPLoss",
    "SmoothAPLoss",
    "RankedListLoss",
    "PNPLoss",
    "ThresholdConsistentMarginLoss",
    "DynamicSoftMarginLoss",
    "VICRegLoss",
    "HDCMiner",
    "PairMarginMiner",
    "UniformHistogramMiner",
    "BatchEasyHardMiner",
    "AngularMiner",
    "get",
    "get_class",
    "names",
    "attach_loss_state",
]
