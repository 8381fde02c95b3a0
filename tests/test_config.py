"""Typed configs: YAML loading, --set overrides, unknown keys named, types checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from accord.config import apply_override, load_config
from accord.core.errors import ConfigError


def test_method_and_dataset_compose_with_overrides() -> None:
    cfg = load_config(method="late_fusion", dataset="conflictbench",
                      overrides=["train.lr=0.01", "train.seeds=3", "data.params.conflict_rate=0.5"])
    assert cfg.model.name == "late_fusion"
    assert cfg.train.lr == 0.01
    assert cfg.train.seeds == [0, 1, 2]
    assert cfg.data.params["conflict_rate"] == 0.5
    assert cfg.run_dir == Path("runs") / "late_fusion_conflictbench"


def test_yaml_file_and_roundtrip(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("name: x\nmodel: {name: tfn}\ntrain: {epochs: 3}\n")
    cfg = load_config(p)
    again = tmp_path / "again.yaml"
    again.write_text(cfg.to_yaml())
    assert load_config(again) == cfg


@pytest.mark.parametrize(
    "override,pattern",
    [
        ("train.lrr=0.1", r"train\.lrr: unknown key"),
        ("colour=red", r": colour: unknown key"),
        ("loss_weights.rec=1", r"loss_weights\.rec: model 'late_fusion' \(and its hooks\) emits no"),
        ("train.early_stopping.metric=MEA", r"train\.early_stopping\.metric: unknown metric 'MEA'"),
        ("train.hooks=[{name: ogm_ge, params: {alfa: 1}}]", r"train\.hooks\.0\.params\.alfa: unknown key for hook"),
        ("train.hooks=[{name: nosuchhook}]", r"unknown trainer hook 'nosuchhook'"),
        ("train.lr=fast", r"train\.lr: .*number.*fast"),
        ("train.epochs=0", r"train\.epochs"),
        ("task.kind=ranking", r"task\.kind"),
        ("model.params.bogus=1", r"model\.params\.bogus: unknown key for model 'late_fusion'"),
        ("data.params.bogus=1", r"data\.params\.bogus: unknown key for dataset 'conflictbench'"),
        ("model.name=nosuchmodel", r"unknown model 'nosuchmodel'"),
        ("data.name=nosuchdata", r"unknown dataset 'nosuchdata'"),
        ("data.corruption=drop:smell:0.5", r"smell"),
        ("train.seeds=[1, 1]", r"seeds repeat"),
        ("train.device=banana", r"^configs for late_fusion/conflictbench: train\.device: not a torch device string "
                                r"\(e\.g\. cpu, cuda, cuda:1, mps\) \(got 'banana'\)$"),
        ("train.device=cuda:x", r"train\.device: not a torch device string .*\(got 'cuda:x'\)$"),
    ],
)
def test_bad_overrides_give_one_line_errors(override: str, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern) as err:
        load_config(method="late_fusion", dataset="conflictbench", overrides=[override])
    assert "\n" not in str(err.value)


def test_device_strings_of_the_right_form_load_anywhere() -> None:
    """Only the form is checked at load: whether CUDA is present is the trainer's check (a config made on a GPU
    machine still loads on a laptop)."""
    for device in ("cpu", "cuda", "cuda:1", "mps"):
        assert load_config(method="late_fusion", overrides=[f"train.device={device}"]).train.device == device


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {epochs: 3\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: invalid YAML"):
        load_config(bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(lst)


def test_override_syntax() -> None:
    assert apply_override({}, "a.b=3") == {"a": {"b": 3}}
    assert apply_override({"a": {"c": 1}}, "a.b=[1, 2]") == {"a": {"c": 1, "b": [1, 2]}}
    with pytest.raises(ConfigError, match="expected key=value"):
        apply_override({}, "train.lr")
    with pytest.raises(ConfigError, match="is a value, not a section"):
        apply_override({"train": 3}, "train.lr=1")


def test_classification_loss_must_fit() -> None:
    with pytest.raises(ConfigError, match="does not fit task kind"):
        load_config(method="late_fusion", dataset="conflictbench",
                    overrides=["task.kind=classification", "task.loss=l1"])
