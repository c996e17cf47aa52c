"""The ranking losses (FastAP, Smooth-AP, ranked list) against explicit-loop references written from
the papers' equations (tests/reference_ranking_losses.py): paper defaults, named options and Embedding
Expansion; gradients of the forms pytorch-metric-learning does not compute against central
differences. Equality with PML: tests/test_loss_pml_ranking.py; robustness (magnitudes, XLA, mixed
precision, degenerate batches): the shared lists of tests/test_loss_common.py and
tests/test_loss_newcomers.py."""
import numpy as np
import pytest
import tensorflow as tf

import reference_ranking_losses as ref
import tfdml
from conftest import LAYOUTS, expansion_id, loss_and_gradient, loss_value, make_expansion, numeric_gradient, \
    random_embeddings

PAIR_LAYOUTS = ["2_per_class", "uneven", "interleaved", "two_classes"]
EXPANSIONS = [(0, "consecutive", "class"), (2, "consecutive", "class"), (1, "all", "anchor")]

# name: (build(expansion), reference(x, labels, n, pairs, pooling)); paper defaults unless noted.
CASES = {
    "fastap": (lambda e: tfdml.losses.FastAPLoss(expansion=e, dtype="float64"),
               lambda x, y, *ee: ref.fastap(x, y, 10, *ee)),
    "fastap_bins_3": (lambda e: tfdml.losses.FastAPLoss(bins=3, expansion=e, dtype="float64"),
                      lambda x, y, *ee: ref.fastap(x, y, 3, *ee)),
    "smooth_ap": (lambda e: tfdml.losses.SmoothAPLoss(expansion=e, dtype="float64"),
                  lambda x, y, *ee: ref.smooth_ap(x, y, 0.01, False, *ee)),
    "smooth_ap_t05": (lambda e: tfdml.losses.SmoothAPLoss(temperature=0.5, expansion=e, dtype="float64"),
                      lambda x, y, *ee: ref.smooth_ap(x, y, 0.5, False, *ee)),
    "smooth_ap_include_query": (
        lambda e: tfdml.losses.SmoothAPLoss(temperature=0.1, include_query=True, expansion=e, dtype="float64"),
        lambda x, y, *ee: ref.smooth_ap(x, y, 0.1, True, *ee)),
    "ranked_list": (lambda e: tfdml.losses.RankedListLoss(expansion=e, dtype="float64"),
                    lambda x, y, *ee: ref.ranked_list(x, y, 0.4, 1.2, 10.0, 0.0, 1.0, *ee)),
    "ranked_list_weighted": (
        lambda e: tfdml.losses.RankedListLoss(margin=0.3, alpha=1.3, t_n=4.0, t_p=3.0, balance=0.7, expansion=e,
                                              dtype="float64"),
        lambda x, y, *ee: ref.ranked_list(x, y, 0.3, 1.3, 4.0, 3.0, 0.7, *ee)),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("layout", PAIR_LAYOUTS)
@pytest.mark.parametrize("expansion", EXPANSIONS, ids=expansion_id)
def test_ranking_losses_match_paper_references(case, layout, expansion):
    y = LAYOUTS[layout]
    x = random_embeddings(y, 5, 3 + len(y), scale=0.6)
    build, reference = CASES[case]
    expected = reference(x, y, *expansion)
    assert loss_value(build(make_expansion(*expansion)), y, x) == pytest.approx(expected, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("layout", ["one_class", "singletons", "pair_and_singletons"])
def test_ranking_losses_match_references_on_degenerate_layouts(case, layout):
    y = {"one_class": np.array([3, 3, 3, 3]), "singletons": np.array([0, 1, 2, 3]),
         "pair_and_singletons": np.array([1, 0, 1, 3])}[layout]
    x = random_embeddings(y, 5, 7)
    build, reference = CASES[case]
    assert loss_value(build(None), y, x) == pytest.approx(reference(x, y, 0, "consecutive", "class"), abs=1e-12)


def test_expansion_changes_the_ranking_losses():
    """EE enters through the negative values: a different (here never smaller for FastAP / Smooth-AP,
    whose negatives only get closer) loss."""
    y = LAYOUTS["2_per_class"]
    x = random_embeddings(y, 5, 4)
    for name in ("fastap", "smooth_ap", "ranked_list"):
        plain = loss_value(tfdml.losses.get(name, dtype="float64"), y, x)
        expanded = loss_value(tfdml.losses.get(name, expansion=tfdml.EmbeddingExpansion(3), dtype="float64"), y, x)
        assert expanded != pytest.approx(plain, abs=1e-9), name
        if name != "ranked_list":
            assert expanded >= plain - 1e-12, name


def test_named_options_differ_from_the_paper_forms_where_documented():
    y = LAYOUTS["4_per_class"]
    x = random_embeddings(y, 5, 1)
    paper = loss_value(tfdml.losses.SmoothAPLoss(temperature=0.1, dtype="float64"), y, x)
    with_query = loss_value(tfdml.losses.SmoothAPLoss(temperature=0.1, include_query=True, dtype="float64"), y, x)
    assert with_query < paper  # the query ranks itself first among its positives
    singletons = np.array([0, 1, 2])
    assert loss_value(tfdml.losses.SmoothAPLoss(dtype="float64"), singletons, x[:3]) == 0.0
    assert loss_value(tfdml.losses.SmoothAPLoss(0.5, include_query=True, dtype="float64"), singletons, x[:3]) > 0.0
    paper = loss_value(tfdml.losses.RankedListLoss(balance=0.5, dtype="float64"), y, x)
    pml = loss_value(tfdml.losses.RankedListLoss(balance=0.5, form="pml", dtype="float64"), y, x)
    assert pml < paper  # (1 − λ) L_P + λ L_N with λ = ½ halves L_P; the weight sums get 1e-5 per entry


# ------------------------------------------ gradients of the paper-only forms
@pytest.mark.parametrize("case", ["smooth_ap", "smooth_ap_ee", "ranked_list_uniform", "ranked_list_ee_uniform"])
def test_gradients_of_paper_forms_match_central_differences(case):
    y = np.array([0, 0, 0, 1, 1, 2])
    x = random_embeddings(y, 4, 11, scale=0.8)
    expansion = tfdml.EmbeddingExpansion(2) if "_ee" in case else None
    if case.startswith("smooth_ap"):
        loss = tfdml.losses.SmoothAPLoss(temperature=0.05, expansion=expansion, dtype="float64")
    else:  # weights all 1 (T_n = T_p = 0): the paper form is differentiable as printed
        loss = tfdml.losses.RankedListLoss(margin=0.4, alpha=1.3, t_n=0.0, expansion=expansion, dtype="float64")
    _, grad = loss_and_gradient(loss, y, x)
    expected = numeric_gradient(lambda z: loss_value(loss, y, z), x)
    np.testing.assert_allclose(grad, expected, atol=1e-5 * max(1.0, np.abs(expected).max()))


def test_ranked_list_weights_are_constants_in_the_gradient():
    """With T_n, T_p > 0 the gradient is that of the weighted means with the weights frozen at x."""
    y = np.array([0, 0, 0, 1, 1, 2])
    x = random_embeddings(y, 4, 12, scale=0.8)
    loss = tfdml.losses.RankedListLoss(margin=0.4, alpha=1.3, t_n=10.0, t_p=2.0, dtype="float64")
    _, grad = loss_and_gradient(loss, y, x)
    expected = numeric_gradient(lambda z: ref.ranked_list(z, y, 0.4, 1.3, 10.0, 2.0, 1.0, weights_from=x), x)
    np.testing.assert_allclose(grad, expected, atol=1e-6 * max(1.0, np.abs(expected).max()))
    unfrozen = numeric_gradient(lambda z: ref.ranked_list(z, y, 0.4, 1.3, 10.0, 2.0, 1.0), x)
    assert np.abs(unfrozen - expected).max() > 1e-3  # the test can tell the two gradients apart


# ------------------------------------------------------------- robustness
@pytest.mark.parametrize("name", ["fastap", "smooth_ap", "ranked_list"])
@pytest.mark.parametrize("jit", [False, True])
def test_dynamic_batch_size_graph_matches_eager(name, jit):
    y = LAYOUTS["interleaved"]
    x = random_embeddings(y, 6, 3).astype(np.float32)
    loss = tfdml.losses.get(name, expansion=2)
    eager = float(loss(y, x))
    spec = [tf.TensorSpec([None], tf.int64), tf.TensorSpec([None, 6], tf.float32)]
    graph = tf.function(lambda a, b: loss(a, b), input_signature=spec, jit_compile=jit)
    assert float(graph(tf.constant(y, tf.int64), tf.constant(x))) == pytest.approx(eager, rel=1e-4, abs=1e-5)


@pytest.mark.parametrize("name", ["fastap", "smooth_ap", "ranked_list"])
def test_nan_embedding_gives_nan(name):
    y = LAYOUTS["2_per_class"]
    x = random_embeddings(y, 6, 5).astype(np.float32)
    x[3, 2] = np.nan
    assert np.isnan(float(tfdml.losses.get(name)(y, x)))


def test_bad_arguments_name_the_argument():
    for build, argument in [
        (lambda: tfdml.losses.FastAPLoss(bins=0), "bins"),
        (lambda: tfdml.losses.SmoothAPLoss(temperature=0.0), "temperature"),
        (lambda: tfdml.losses.SmoothAPLoss(include_query="yes"), "include_query"),
        (lambda: tfdml.losses.RankedListLoss(t_n=-1.0), "t_n"),
        (lambda: tfdml.losses.RankedListLoss(form="full"), "form"),
        (lambda: tfdml.losses.RankedListLoss(form="pml", balance=2.0), "balance"),
    ]:
        with pytest.raises(ValueError, match=argument):
            build()
