"""Config files and overrides: YAML 1.2 numbers (issue 15 item 10) and shipped configs by name (issue 14 §3)."""
import os

import pytest

from tfdml.training.config import find_config, load_config, load_yaml, packaged_configs, parse_override

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("text, expected", [("1e-4", 1e-4), ("5E-4", 5e-4), (".5", 0.5), ("1_000", 1000),
                                            ("1.0e4", 1e4), ("-2e3", -2000.0), ("+1e+2", 100.0), ("3", 3),
                                            ("0.001", 0.001)])
def test_override_numbers_parse_as_yaml_1_2(text, expected):
    key, value = parse_override(f"optimizer.learning_rate={text}")
    assert key == "optimizer.learning_rate"
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("text", ["1e-4", "5E-4", ".5", "1_000"])
def test_learning_rate_override_accepted(text):
    config = load_config(None, [f"optimizer.learning_rate={text}"])
    assert config["optimizer"]["learning_rate"] == float(text.replace("_", ""))


@pytest.mark.parametrize("text", ["abc", "1e", "e5", "1.2.3", "1e-4x", "v1e3"])
def test_strings_stay_strings_beside_numbers(text):
    config = load_config(None, [f"dataset.data_dir={text}", "optimizer.learning_rate=1e-4"])
    assert config["dataset"]["data_dir"] == text and config["optimizer"]["learning_rate"] == 1e-4
    assert load_yaml(f"[{text}, 1e-4]") == [text, 1e-4]


def test_config_file_numbers_and_free_form_params(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optimizer:\n  learning_rate: 5E-4\n  weight_decay: 1e-5\n"
                    "loss:\n  name: triplet\n  params: {margin: 2e-1, mining: hard}\n"
                    "training:\n  steps_per_epoch: 1_000\n")
    config = load_config(str(path), ["sampler.pool_size=2_048"])
    assert config["optimizer"]["learning_rate"] == 5e-4 and config["optimizer"]["weight_decay"] == 1e-5
    assert config["loss"]["params"]["margin"] == 0.2 and isinstance(config["loss"]["params"]["margin"], float)
    assert config["training"]["steps_per_epoch"] == 1000 and config["sampler"]["pool_size"] == 2048


def test_sweep_grid_values_parse_as_yaml_1_2():
    from tfdml.training.sweep import parse_grid

    assert parse_grid("optimizer.learning_rate=1e-4,5E-4,.5") == ("optimizer.learning_rate", [1e-4, 5e-4, 0.5])


def test_shipped_config_by_name_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    expected = load_config(os.path.join(ROOT, "configs", "ee_cub200.yaml"))
    for name in ("ee_cub200", "ee_cub200.yaml", "configs/ee_cub200.yaml"):
        assert load_config(name) == expected, name
    assert set(packaged_configs()) >= {"default", "ee_cub200", "roth_margin_sop"}


def test_existing_path_wins_over_shipped_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ee_cub200").write_text("seed: 7\n")
    assert find_config("ee_cub200") == "ee_cub200" and load_config("ee_cub200")["seed"] == 7


def test_unknown_config_name_lists_close_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"'ee_cub20'.*ee_cub200"):
        load_config("ee_cub20")
    with pytest.raises(FileNotFoundError, match="missing/dir/ee_cub200.yaml"):
        load_config("missing/dir/ee_cub200.yaml")
