"""Self-supervised training (tfdml.data.self_supervised_pipeline, the `self_supervised` config section): two
independently augmented views per image labelled by instance, train.py with configs/selfsup_ntxent_digits.yaml,
unlabeled folders, and the config's checks."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

import tfdml
from tfdml.cli import train
from tfdml.training import load_config
from tfdml.training import runner

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "selfsup_ntxent_digits.yaml")
QUICK = ["training.epochs=1", "training.steps_per_epoch=2", "training.eval_every=1", "training.tensorboard=false",
         "training.evaluate_untrained=false", "sampler.batch_size=16", "model.embedding_dim=16",
         "dataset.image_size=16", "training.eval_batch_size=512"]


def _sets(overrides):
    return [arg for override in overrides for arg in ("--set", override)]


def _ramp_split(count=12, size=24):
    """Image i is a horizontal ramp over [20 i, 20 i + 10]: any crop or resize of it stays in that range (so a
    view tells which image it came from) and two random crops of it differ."""
    ramp = np.linspace(0.0, 10.0, size)[None, :, None]
    images = np.stack([np.broadcast_to(20.0 * i + ramp, (size, size, 3)) for i in range(count)])
    return tfdml.data.Split("ramps", np.arange(count) % 3, images=images.round().astype(np.uint8))


def _image_of(view):
    """The ramp image a view came from (its pixel range), or -1 when its pixels span two images' ranges."""
    low, high = int(np.floor(view.min() / 20.0)), int(np.floor((view.max() - 1e-3) / 20.0))
    return low if low == high and view.max() <= 20.0 * low + 10.0 + 1e-3 else -1


def _check_two_views(images, labels, views=2):
    """Rows k·views … k·views + views − 1 share one label, labels differ between groups, views differ."""
    groups = labels.reshape(-1, views)
    assert (groups == groups[:, :1]).all()
    assert len(np.unique(groups[:, 0])) == len(groups)
    pixels = images.reshape(len(groups), views, -1)
    different = [not np.array_equal(pixels[k, 0], pixels[k, v]) for k in range(len(groups)) for v in range(1, views)]
    assert np.mean(different) >= 0.9, different  # independent augmentations (a rare draw may coincide)


# ---------------------------------------------------------------------- sampler and pipeline
def test_views_sampler_draws_distinct_images_in_passes():
    sampler = tfdml.data.ViewsSampler(2)
    batches = sampler.batches(np.zeros(10), 8, seed=3)
    first = [next(batches) for _ in range(5)]
    for batch in first:
        assert batch.shape == (8,) and (batch[0::2] == batch[1::2]).all()
        assert len(set(batch[0::2].tolist())) == 4
    drawn = np.concatenate([b[0::2] for b in first])  # 20 draws = two passes over 10 images
    assert sorted(drawn[:10].tolist()) == list(range(10)) and sorted(drawn[10:20].tolist()) == list(range(10))
    three = next(tfdml.data.ViewsSampler(3).batches(np.zeros(5), 6, seed=0))
    assert (three.reshape(2, 3) == three[::3, None]).all() and three[0] != three[3]
    for views, batch_size, images, message in [(2, 7, 10, "multiple of views"), (2, 2, 10, "at least two"),
                                               (2, 12, 5, "only 5 images")]:
        with pytest.raises(ValueError, match=message):
            tfdml.data.ViewsSampler(views).check(np.zeros(images), batch_size)
    with pytest.raises(ValueError, match="views"):
        tfdml.data.ViewsSampler(1)


@pytest.mark.parametrize("views", [2, 3])
def test_pipeline_yields_views_of_one_image_with_different_augmentations(views):
    split = _ramp_split()
    data = tfdml.data.self_supervised_pipeline(split, 4 * views, views=views, augmentation="roth_noflip",
                                               image_size=16, seed=1)
    for images, labels in data.take(4):
        images, labels = images.numpy(), labels.numpy()
        assert images.shape == (4 * views, 16, 16, 3) and labels.dtype == np.int32
        _check_two_views(images, labels, views)
        # every view comes from the image whose index is its label (an instance id, not the class 0-2)
        assert [_image_of(view) for view in images] == labels.tolist()
    again = next(iter(tfdml.data.self_supervised_pipeline(split, 4 * views, views=views, augmentation="roth_noflip",
                                                          image_size=16, seed=1)))
    np.testing.assert_array_equal(again[0].numpy(), next(iter(data))[0].numpy())  # reproducible for a seed


def test_pipeline_trains_with_model_fit_and_each_pair_based_loss():
    split = _ramp_split()
    for loss in (tfdml.losses.NTXentLoss(temperature=0.5), tfdml.losses.SupConLoss(), tfdml.losses.VICRegLoss()):
        keras = tf.keras
        inputs = keras.Input((16, 16, 3))
        model = keras.Model(inputs, keras.layers.Dense(8)(keras.layers.Flatten()(inputs / 255.0)))
        model.compile(optimizer="adam", loss=loss)
        data = tfdml.data.self_supervised_pipeline(split, 8, augmentation="roth_noflip", image_size=16)
        history = model.fit(data, epochs=1, steps_per_epoch=2, verbose=0)
        assert np.isfinite(history.history["loss"]).all()


# ----------------------------------------------------------------------------------- train.py
def test_train_py_with_the_selfsup_config_trains_on_two_views_per_instance(tmp_path, monkeypatch):
    """train.py --config selfsup_ntxent_digits for two steps: the batches it trains on hold two views per
    instance (labels: image indices, not the digit classes) with different augmentations; the labelled test
    classes evaluate."""
    seen = []
    make_train_input = runner.make_train_input

    def recording(config, train_split, bank=None):
        dataset_fn = make_train_input(config, train_split, bank)

        def record(images, labels):
            def keep(x, y):
                seen.append((x.numpy(), y.numpy()))
                return y
            kept = tf.py_function(keep, [images, labels], labels.dtype)
            kept.set_shape(labels.shape)
            return images, kept

        return lambda context, skip_batches=0: dataset_fn(context, skip_batches).map(record)

    monkeypatch.setattr(runner, "make_train_input", recording)
    run_dir = tmp_path / "run"
    results = train.main(["--config", CONFIG, "--output", str(run_dir), "--quiet", *_sets(QUICK)])
    assert len(seen) >= 2
    config = load_config(str(run_dir / "config.yaml"))
    assert config["self_supervised"] == {"enabled": True, "views": 2} and config["loss"]["name"] == "ntxent"
    train_split = runner.load_splits(config)[0]
    for images, labels in seen[:2]:
        assert images.shape == (16, 16, 16, 3)
        _check_two_views(images, labels)
        assert labels.max() >= train_split.num_classes  # instance ids, not the 5 digit classes
    assert 0.0 <= results["fc"]["recall@1"] <= 1.0
    with open(run_dir / "metrics.json") as handle:
        assert json.load(handle)["split"] == "test"
    assert (run_dir / "best.keras").exists()


def _write_images(folder, count, seed):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for k in range(count):
        png = tf.io.encode_png(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8))
        (folder / f"img{k}.png").write_bytes(png.numpy())


def test_unlabeled_folder_loads_images_directly_and_in_sub_folders(tmp_path):
    _write_images(tmp_path / "photos", 5, 0)
    _write_images(tmp_path / "photos" / "more", 3, 1)
    (tmp_path / "photos" / "notes.txt").write_text("not an image")
    assert tfdml.data.self_supervised.is_unlabeled_folder(str(tmp_path / "photos"))
    with pytest.warns(UserWarning, match="1 files that are not images"):
        split = tfdml.data.unlabeled_folder(str(tmp_path / "photos"))
    assert split.num_images == 8 and split.num_classes == 1 and len(split.skipped) == 1
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no image"):
        tfdml.data.unlabeled_folder(str(tmp_path / "empty"))
    _write_images(tmp_path / "classes" / "a", 2, 2)
    _write_images(tmp_path / "classes" / "b", 2, 3)
    assert not tfdml.data.self_supervised.is_unlabeled_folder(str(tmp_path / "classes"))


def test_train_py_on_an_unlabeled_folder_trains_without_evaluation(tmp_path):
    _write_images(tmp_path / "photos", 12, 4)
    run_dir = tmp_path / "run"
    results = train.main(["--output", str(run_dir), "--quiet", *_sets(QUICK + [
        "dataset.name=folder", f"dataset.data_dir={tmp_path / 'photos'}", "dataset.validation_classes=0",
        "self_supervised.enabled=true", "loss.name=vicreg", "expansion=null", "model.normalize=false",
        "augmentation.train=roth", "training.taps=[fc]", "training.export_tap=fc"])])
    assert results == {}
    with open(run_dir / "metrics.json") as handle:
        assert json.load(handle)["split"] is None
    assert (run_dir / "final.keras").exists() and not (run_dir / "best.keras").exists()


def test_train_py_on_a_class_folder_ignores_the_training_labels_and_evaluates(tmp_path, monkeypatch):
    for name in "abcd":
        _write_images(tmp_path / "classes" / name, 6, ord(name))
    config = load_config(None, QUICK + ["dataset.name=folder", f"dataset.data_dir={tmp_path / 'classes'}",
                                        "dataset.validation_classes=0", "self_supervised.enabled=true",
                                        "loss.name=supcon", "expansion=null", "sampler.batch_size=8"])
    train_split, test_split = runner.load_splits(config)
    assert train_split.num_classes == 2 and test_split.num_classes == 2
    images, labels = next(iter(runner.make_train_input(config, train_split)(
        tf.distribute.InputContext(), 0)))
    _check_two_views(images.numpy(), labels.numpy())
    assert len(np.unique(labels.numpy())) == 4  # four instances, although the training split has two classes


# ------------------------------------------------------------------------------------ config
@pytest.mark.parametrize("overrides,message", [
    (["self_supervised.views=1"], "self_supervised.views"),
    (["self_supervised.enabled=true", "sampler.batch_size=15", "sampler.samples_per_class=5"], "multiple of"),
    (["self_supervised.enabled=true", "loss.name=cosface", "expansion=null"], "pair-based loss"),
    (["self_supervised.enabled=true", "sampler.name=ddm"], "embedded sampler"),
    (["self_supervised.enabled=true", "self_supervised.unknown=1"], "Unknown config key"),
])
def test_config_checks_name_the_key(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, overrides)


def test_normal_runs_keep_the_class_batches():
    config = load_config(None, QUICK)
    assert config["self_supervised"] == {"enabled": False, "views": 2}
    train_split = runner.load_splits(config)[0]
    images, labels = next(iter(runner.make_train_input(config, train_split)(tf.distribute.InputContext(), 0)))
    assert labels.numpy().max() < train_split.num_classes  # class labels, several samples per class
    assert len(np.unique(labels.numpy())) < len(labels.numpy()) // 2
