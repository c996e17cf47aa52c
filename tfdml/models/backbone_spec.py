"""`BackboneSpec`: what tfdml knows about one of its own backbones (constructor, input, blocks, PyTorch names)."""
import dataclasses
from typing import Callable, Optional


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """One of tfdml's backbone definitions.

    Attributes:
        constructor: `constructor(input_shape)` → a `keras.Model` from
            preprocessed images to the last feature map (no classifier, no pooling).
        preprocessing: the `PixelPreprocessing` mode its pretrained weights expect.
        block_layers: the layers ending each block (stage), from the input
            outwards (the "block{k}" taps).
        torch_layers: `torch_layers(model)` → {Keras layer name: PyTorch module
            prefix} for importing the reference implementation's state dict, or
            None when the backbone has no PyTorch counterpart.
        torch_ignored: prefixes of the reference state dict's tensors that are
            not part of the backbone (classifier, auxiliary heads).
    """

    constructor: Callable
    preprocessing: str
    block_layers: tuple = ()
    torch_layers: Optional[Callable] = None
    torch_ignored: tuple = ()
