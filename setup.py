"""Packaging for tfdml: deep metric learning for TensorFlow 2.16+ / Keras 3."""
from setuptools import find_packages, setup

setup(
    name="tfdml",
    version="0.1.0",
    description=(
        "Deep metric learning for TensorFlow/Keras 3: Embedding Expansion, the "
        "loss zoo of Roth et al., embedding taps, samplers, metrics and analysis."
    ),
    python_requires=">=3.11",
    packages=find_packages(include=["tfdml", "tfdml.*"]),
    install_requires=[
        "tensorflow>=2.16",
        "keras>=3.0",
        "tensorflow-datasets>=4.9",
        "numpy",
        "scikit-learn",
        "matplotlib",
        "PyYAML",
    ],
    extras_require={"test": ["pytest"], "faiss": ["faiss-cpu"]},
)
