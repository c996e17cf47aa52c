"""Packaging for tfdml: deep metric learning for TensorFlow 2.16+ / Keras 3.

`pip install .` installs the `tfdml` package with the repository's `configs/`
as package data `tfdml/configs/*.yaml` (one source: `package_dir` maps
`tfdml.configs` to `configs/`) and the console scripts `tfdml-train`,
`tfdml-evaluate`, `tfdml-sweep` (also `python -m tfdml`). Extras: `datasets`
(tensorflow-datasets, for CUB-200 / CARS196 without a local copy), `faiss`
(faiss-cpu search backend), `safetensors` (reading `.safetensors` checkpoints), `hub` (KerasHub
backbones: ViT, DINOv2, CLIP / SigLIP image towers), `test` (pytest, faiss-cpu, the datasets, safetensors and hub
extras, and torch / torchvision / pretrainedmodels: the reference networks the
tests compare the backbones with), `docs` (MkDocs, Material and mkdocstrings: `mkdocs build`
builds the documentation site; in the test extra too).
"""
from setuptools import find_packages, setup

DATASETS = ["tensorflow-datasets>=4.9"]
SAFETENSORS = ["safetensors>=0.4"]
HUB = ["keras-hub>=0.32"]
# The documentation site (mkdocs.yml): MkDocs, the Material theme, mkdocstrings for the API reference; the
# formulas are drawn by matplotlib's mathtext when the site is built (no MathJax, no network).
DOCS = ["mkdocs>=1.6", "mkdocs-material>=9", "mkdocstrings[python]>=0.24"]
# The published PyTorch definitions the tests compare the backbones with (users never need torch): the CPU
# wheel of torch and the torchvision release built for it; pretrainedmodels for BN-Inception / ResNet-50.
REFERENCE_NETWORKS = ["torch==2.13.0", "torchvision==0.28.0", "pretrainedmodels==0.7.4", "pytorch-metric-learning==2.9.0"]

setup(
    name="tfdml",
    version="0.1.0",
    description=(
        "Deep metric learning for TensorFlow/Keras 3: Embedding Expansion, the "
        "loss zoo of Roth et al., embedding taps, samplers, metrics and analysis."
    ),
    python_requires=">=3.11",
    packages=find_packages(include=["tfdml", "tfdml.*"]) + ["tfdml.configs"],
    package_dir={"tfdml.configs": "configs"},
    package_data={"tfdml.configs": ["*.yaml"]},
    install_requires=[
        "tensorflow>=2.16,<3",
        "keras>=3.0,<4",
        "tensorboard",
        "numpy",
        "scikit-learn",
        "matplotlib",
        "PyYAML",
    ],
    extras_require={"datasets": DATASETS, "safetensors": SAFETENSORS, "faiss": ["faiss-cpu"], "hub": HUB,
                    "docs": DOCS,
                    "test": ["pytest", "pytest-xdist", "faiss-cpu"] + DATASETS + SAFETENSORS + HUB + REFERENCE_NETWORKS + DOCS},
    entry_points={
        "console_scripts": [
            "tfdml-train=tfdml.cli.train:cli",
            "tfdml-evaluate=tfdml.cli.evaluate:cli",
            "tfdml-sweep=tfdml.cli.sweep:cli",
            "tfdml-weights=tfdml.cli.weights:cli",
        ],
    },
)
