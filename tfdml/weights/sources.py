"""The published ImageNet checkpoints tfdml's backbones load, and which paper used which.

`weights="imagenet"` means the checkpoint the backbone's paper used
(`IMAGENET_DEFAULTS`); any source can also be named explicitly by its key
(e.g. `weights="torchvision/resnet50_v2"`). Each published file name carries
the first hex digits of the file's hash (PyTorch hub: SHA-256 of the file;
gluoncv: SHA-1 of the `.params` file inside the zip), which is verified after
download.
"""
import dataclasses
import os
import re
from typing import Optional


@dataclasses.dataclass(frozen=True)
class WeightSource:
    """One published checkpoint.

    Attributes:
        name: the key `weights=` accepts, "<library>/<model>".
        backbone: the tfdml backbone the checkpoint fits.
        url: where the library publishes it.
        top1: the library's ImageNet top-1 accuracy (%) for it.
        papers: the papers in tfdml's scope that start from it.
        note: anything a user should know (layout, preprocessing).
        preprocessing: the `PixelPreprocessing` mode these weights expect, when
            it differs from the backbone's default (None: the default).
        hash_algorithm: "sha256" (PyTorch hub) or "sha1" (gluoncv).
        archive_member: the weights file inside a published zip archive.
        rename: a `tfdml.weights.renames.RENAMES` key translating the file's
            tensor names to the backbone's PyTorch names.
    """

    name: str
    backbone: str
    url: str
    top1: float
    papers: tuple = ()
    note: str = ""
    preprocessing: Optional[str] = None
    hash_algorithm: str = "sha256"
    archive_member: Optional[str] = None
    rename: Optional[str] = None

    @property
    def file_name(self):
        """File name of the download (the last part of `url`)."""
        return os.path.basename(self.url)

    @property
    def weights_file_name(self):
        """The file holding the tensors: the archive member, or the published file itself."""
        return self.archive_member or self.file_name

    @property
    def hash_prefix(self):
        """The hash prefix in the file name (`resnet50-19c8e357.pth` → "19c8e357")."""
        match = re.search(r"-([0-9a-f]{6,})\.[A-Za-z]+$", self.file_name)
        return match.group(1) if match else None


_TORCHVISION = "https://download.pytorch.org/models/"
_GLUONCV = "https://apache-mxnet.s3-accelerate.dualstack.amazonaws.com/gluon/models/"
SOURCES = {source.name: source for source in (
    WeightSource("gluoncv/googlenet", "googlenet", _GLUONCV + "googlenet-c7c89366.zip", 72.87,
                 ("Ko & Gu 2020 (EE; the authors' code loads it)",),
                 "gluoncv's GoogLeNet (MXNet .params read without MXNet); torchvision's layout; ImageNet "
                 "mean/std input", preprocessing="torch", hash_algorithm="sha1",
                 archive_member="googlenet-c7c89366.params", rename="gluoncv_googlenet"),
    WeightSource("torchvision/googlenet", "googlenet", _TORCHVISION + "googlenet-1378be20.pth", 69.778,
                 ("Milbich et al. 2020 (Sharing Matters, GoogLeNet table)",),
                 "torchvision's GoogLeNet (conv-BN-ReLU; input x/127.5 - 1, its transform_input)"),
    WeightSource("pretrainedmodels/bninception", "bninception",
                 "http://data.lip6.fr/cadene/pretrainedmodels/bn_inception-52deb4733.pth", 73.524,
                 ("Roth et al. 2020 (Table 1, Fig. 2)",),
                 "pretrainedmodels' BN-Inception; BGR input in 0-255 minus the mean (104, 117, 128)"),
    WeightSource("pretrainedmodels/resnet18", "resnet18", _TORCHVISION + "resnet18-5c106cde.pth", 69.758,
                 ("Xuan et al. 2020",), "torchvision's original ResNet-18 file (torchvision.models.resnet18 "
                 "before 0.13 and pretrainedmodels)"),
    WeightSource("torchvision/resnet18", "resnet18", _TORCHVISION + "resnet18-f37072fd.pth", 69.758,
                 (), "torchvision's IMAGENET1K_V1 file (the same network, saved again)"),
    WeightSource("pretrainedmodels/resnet50", "resnet50", _TORCHVISION + "resnet50-19c8e357.pth", 76.130,
                 ("Roth et al. 2020", "Milbich et al. 2020 (Sharing Matters)"),
                 "torchvision's original ResNet-50 file, loaded by pretrainedmodels.resnet50 in the authors' code "
                 "(ResNet v1.5: stride in the 3x3 convolution)"),
    WeightSource("torchvision/resnet50_v1", "resnet50", _TORCHVISION + "resnet50-0676ba61.pth", 76.130,
                 (), "torchvision's IMAGENET1K_V1 file"),
    WeightSource("torchvision/resnet50_v2", "resnet50", _TORCHVISION + "resnet50-11ad3fa6.pth", 80.858,
                 (), "torchvision's IMAGENET1K_V2 (newer training recipe; not what the papers used)"),
    WeightSource("torchvision/vgg16_bn", "vgg16_bn", _TORCHVISION + "vgg16_bn-6c64b313.pth", 73.360,
                 ("Vo & Hays 2019",), "torchvision's VGG16 with batch normalisation"),
)}
"""The published ImageNet checkpoints, `WeightSource` by name (`tfdml-weights list`)."""
# What weights="imagenet" loads: the source the backbone's paper started from.
IMAGENET_DEFAULTS = {
    "googlenet": "torchvision/googlenet",
    "bninception": "pretrainedmodels/bninception",
    "resnet18": "pretrainedmodels/resnet18",
    "resnet50": "pretrainedmodels/resnet50",
    "vgg16_bn": "torchvision/vgg16_bn",
}
"""What `weights="imagenet"` loads per backbone: the source the backbone's paper started from."""


def source_names():
    """All explicit source names `weights=` accepts."""
    return sorted(SOURCES)


def imagenet_source(backbone):
    """The `WeightSource` `weights="imagenet"` resolves to for a tfdml backbone, or None."""
    name = IMAGENET_DEFAULTS.get(backbone)
    return SOURCES[name] if name else None


def resolve_source(backbone, weights):
    """The `WeightSource` named by `weights` ("imagenet" or a source name) for `backbone`.

    Raises:
        ValueError: no ImageNet source for the backbone, or a source made for another backbone.
    """
    if weights == "imagenet":
        source = imagenet_source(backbone)
        if source is None:
            raise ValueError(f"weights='imagenet': no published ImageNet checkpoint is known for backbone "
                             f"{backbone!r}; known for: {', '.join(sorted(IMAGENET_DEFAULTS))}.")
        return source
    source = SOURCES[weights]
    if source.backbone != backbone:
        raise ValueError(f"weights={weights!r} is a {source.backbone!r} checkpoint, not one for backbone "
                         f"{backbone!r}.")
    return source
