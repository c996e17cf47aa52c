"""Trainable loss state (proxies, learnable margins) tracked by a Keras model.

Losses with variables expose `loss.state_layer` (a `keras.layers.Layer`) and
`loss.build_state(embedding_dim)`. `attach_loss_state(model, loss)` builds the
state and assigns the layer to the model as an attribute, so Keras tracks it:
its variables join `model.trainable_variables` (trained by `model.fit`), model
checkpoints and `.keras` files. This works for functional models (including
`tfdml.models.EmbeddingModel`, whose `compile` calls it) and subclassed models;
`keras.Sequential` does not track extra layers and is rejected with a clear
error. Embedders/exported serving models are built from the model's layers up
to the embedding and never include it.
"""


def attach_loss_state(model, loss, embedding_dim=None):
    """Makes `model` track the trainable state of `loss`.

    Args:
        model: a `keras.Model`.
        loss: a tfdml loss; losses without state are ignored.
        embedding_dim: embedding size used to build the state (default: the last
            dimension of `model.output_shape` when available).

    Returns:
        The attached layer, or None.
    """
    layer = getattr(loss, "state_layer", None)
    if layer is None:
        return None
    if embedding_dim is None:
        shape = getattr(model, "output_shape", None)
        embedding_dim = shape[-1] if shape else None
    if embedding_dim is None:
        raise ValueError("embedding_dim is needed to build the loss state of this model.")
    loss.build_state(int(embedding_dim))
    model.tfdml_loss_state = loss.state_layer
    tracked = {id(v) for v in model.trainable_variables}
    if not all(id(v) in tracked for v in loss.state_layer.trainable_variables):
        raise ValueError(
            f"{type(model).__name__} does not track layers assigned as attributes, so the loss's trainable "
            "state would not be trained or saved. Use a functional keras.Model (keras.Model(inputs, "
            "outputs)) or tfdml.models.EmbeddingModel.")
    return loss.state_layer
