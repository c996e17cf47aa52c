"""t-SNE stays bounded (a sample above the budget, with a console line) and its palette keeps
neighbouring classes and the train/test panel's colours apart."""
import colorsys
import tracemalloc

import matplotlib
import numpy as np

matplotlib.use("Agg")

from matplotlib.colors import to_rgb  # noqa: E402

from tfdml import analysis  # noqa: E402
from tfdml.analysis import tsne  # noqa: E402


def _points(n, dim=8, classes=5, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    return rng.normal(size=(classes, dim))[labels] + 0.3 * rng.normal(size=(n, dim)), labels


def test_yoked_tsne_samples_within_its_memory_budget(capsys):
    x, labels = _points(6000)
    tracemalloc.start()
    try:
        map_a, map_b = analysis.yoked_tsne(x, x + 0.01, iterations=3, perplexity=5, labels=labels,
                                           memory_budget_mb=2)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 40 * 2 ** 20  # the full 6,000 × 6,000 problem needs ≈ 3.3 GB
    assert "random sample of 147" in capsys.readouterr().out
    assert map_a.shape == map_b.shape == (6000, 2)
    kept = np.isfinite(map_a[:, 0])
    assert kept.sum() == 147 and (np.isfinite(map_b[:, 0]) == kept).all()


def test_yoked_tsne_below_budget_maps_every_point(capsys):
    x, _ = _points(40)
    map_a, _ = analysis.yoked_tsne(x, x, iterations=3, perplexity=5)
    assert np.isfinite(map_a).all() and capsys.readouterr().out == ""


def test_joint_tsne_samples_above_max_points(capsys, tmp_path):
    x, y = _points(900)
    xt, yt = _points(300, seed=1)
    train_2d, test_2d = analysis.joint_tsne(x, y, xt, yt, str(tmp_path / "j.png"), perplexity=5, max_points=120)
    assert "random sample of 120" in capsys.readouterr().out
    assert np.isfinite(train_2d[:, 0]).sum() == 90 and np.isfinite(test_2d[:, 0]).sum() == 30
    assert train_2d.shape == (900, 2) and test_2d.shape == (300, 2)


def test_class_colours_are_distinct_for_neighbours_and_avoid_train_and_test():
    colors = np.array(tsne.class_colors(40))
    assert len({tuple(c) for c in colors}) == 40
    assert np.linalg.norm(colors[1:] - colors[:-1], axis=1).min() > 0.3
    for marker in (tsne.TRAIN_COLOR, tsne.TEST_COLOR):
        hue = colorsys.rgb_to_hsv(*to_rgb(marker))[0]
        gaps = [min(abs(colorsys.rgb_to_hsv(*c)[0] - hue), 1 - abs(colorsys.rgb_to_hsv(*c)[0] - hue))
                for c in colors]
        assert min(gaps) > 15 / 360
    assert tsne.class_colors(5, offset=3) == tsne.class_colors(8)[3:]


def test_joint_tsne_panels_use_disjoint_class_colours(tmp_path, monkeypatch):
    used = {}

    def capture(fig, path):
        for index, ax in enumerate(fig.axes[:2]):
            used[index] = {tuple(np.round(c.get_facecolor()[0][:3], 4)) for c in ax.collections}

    monkeypatch.setattr(tsne, "save", capture)
    x, y = _points(60, classes=4)
    xt, yt = _points(60, classes=4, seed=1)
    analysis.joint_tsne(x, y, xt, yt, perplexity=5)
    train_colour = tuple(np.round(to_rgb(tsne.TRAIN_COLOR), 4))
    assert len(used[0]) == len(used[1]) == 4 and not used[0] & used[1]
    assert train_colour not in used[0] | used[1]
