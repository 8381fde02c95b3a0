"""QASA's feature generator (``augment/diffusion.py``): the condition summary and the standardisation statistics
over real steps only (hand values), the denoiser's shape per modality, and a generator folder that loads back with
its extra info, or fails with one line naming the file and the key.

Written after the mutation run over ``augment/diffusion.py`` (benchmarks/results/mutation.md); the sampling and the
training (ring recovery, seeds, save/load equality) are tested in ``test_qasa.py``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save as st_save
from torch import nn

from accord.augment.diffusion import (
    CONFIG,
    WEIGHTS,
    FeatureDiffusion,
    _column_stats,
    ids_digest,
    load_generator,
    summary_vector,
)
from accord.augment.params import GeneratorParams
from accord.core.errors import CheckpointError

SMALL = GeneratorParams(hidden=8, blocks=1, diffusion_steps=10, sample_steps=2)


def test_summary_of_an_utterance_vector_is_zero_for_a_missing_row() -> None:
    x = torch.tensor([[[1.0, -2.0]], [[3.0, 4.0]]])
    out = summary_vector(x, torch.tensor([1, 0]))
    assert out.tolist() == [[1.0, -2.0], [0.0, 0.0]]


def test_summary_of_a_sequence_reads_the_real_steps_only() -> None:
    """Masked mean ⊕ std over the first ``length`` steps; the (non-zero) padding after them is never read. (The std
    is ``sqrt(var + 1e-6) - sqrt(1e-6)``, :func:`accord.models.modules.masked_std`.)"""
    x = torch.tensor([[[1.0], [3.0], [100.0]], [[2.0], [-50.0], [70.0]]])
    out = summary_vector(x, torch.tensor([2, 1]))
    std = (1.0 + 1e-6) ** 0.5 - 1e-3
    torch.testing.assert_close(out, torch.tensor([[2.0, std], [2.0, 0.0]]))


def test_column_stats_over_real_steps_with_std_one_for_constant_columns() -> None:
    x = torch.tensor([[[1.0, 5.0], [3.0, 5.0], [99.0, 99.0]], [[2.0, 5.0], [-9.0, -9.0], [-9.0, -9.0]]])
    mean, std = _column_stats(x, torch.tensor([2, 1]))
    torch.testing.assert_close(mean, torch.tensor([2.0, 5.0]))  # (1 + 3 + 2) / 3 and a constant 5
    torch.testing.assert_close(std, torch.tensor([(2 / 3) ** 0.5, 1.0]))
    one_mean, one_std = _column_stats(torch.tensor([[[4.0]], [[7.0]]]), torch.tensor([1, 0]))  # one real value
    assert one_mean.tolist() == [4.0] and one_std.tolist() == [1.0]


def test_denoisers_are_temporal_for_sequences_and_position_wise_for_vectors() -> None:
    gen = FeatureDiffusion(SMALL, {"text": 3, "audio": 2, "visual": 4}, {"text": 1, "audio": 5, "visual": 1},
                           (-3.0, 3.0))
    for m, temporal in (("audio", True), ("visual", False)):
        den = gen.denoisers[m]
        for mlp in (den.time_mlp, den.cond_mlp):  # embedding MLPs: Linear -> SiLU -> Linear
            assert [type(layer) for layer in mlp] == [nn.Linear, nn.SiLU, nn.Linear]
        assert den.cond_mlp[0].in_features == 3 + 1  # text summary (T = 1: the vector) + label
        assert all(block.temporal is temporal for block in den.blocks), m
        assert isinstance(den.blocks[0].lin1, nn.Linear) is (not temporal)


def _saved(tmp_path: Path) -> tuple[FeatureDiffusion, Path]:
    gen = FeatureDiffusion(SMALL, {"text": 3, "audio": 2, "visual": 4}, {"text": 1, "audio": 1, "visual": 1},
                           (-3.0, 3.0))
    out = tmp_path / "g"
    gen.save(out, extra={"train_ids_digest": "abc", "seed": 7})
    return gen, out


def test_a_generator_folder_is_overwritten_and_loads_back_with_its_extra_info(tmp_path: Path) -> None:
    gen, out = _saved(tmp_path)
    gen.save(out, extra={"train_ids_digest": "def", "seed": 7})  # saving into the same folder again (a re-fit)
    back = load_generator(out)
    assert back.info == {"train_ids_digest": "def", "seed": 7}  # everything but the keys the loader consumes
    assert back.label_range == (-3.0, 3.0) and back.seq_lens == gen.seq_lens
    for k, v in gen.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k


def _edit_config(out: Path, **changes: object) -> None:
    cfg = json.loads((out / CONFIG).read_text())
    for key, value in changes.items():
        if value is None:
            cfg.pop(key)
        else:
            cfg[key] = value
    (out / CONFIG).write_text(json.dumps(cfg))


@pytest.mark.parametrize(("change", "message"), [
    ({"format": "other"}, r"generator\.json: key 'format' must be 'accord-qasa-generator'$"),
    ({"version": 9}, r"generator\.json: key 'version' is 9; this Accord reads 1$"),
    ({"seq_lens": None}, r"generator\.json: missing key 'seq_lens'$"),
    ({"params": {"hidden": "wide"}}, r"g/generator\.json: key 'params' is invalid \(1 validation error"),
])
def test_a_bad_generator_config_is_one_line_naming_the_file_and_key(tmp_path: Path, change: dict[str, object],
                                                                     message: str) -> None:
    _, out = _saved(tmp_path)
    _edit_config(out, **change)
    with pytest.raises(CheckpointError, match=message):
        load_generator(out)


def test_a_config_that_is_not_an_object_names_the_format_key(tmp_path: Path) -> None:
    _, out = _saved(tmp_path)
    (out / CONFIG).write_text("[1, 2]")
    with pytest.raises(CheckpointError, match=r"generator\.json: key 'format' must be"):
        load_generator(out)


def test_bad_generator_weights_are_one_line_naming_the_file(tmp_path: Path) -> None:
    _, out = _saved(tmp_path)
    good = (out / WEIGHTS).read_bytes()
    (out / WEIGHTS).unlink()
    with pytest.raises(CheckpointError, match=r"g/generator\.safetensors: missing \(the generator's weights\)$"):
        load_generator(out)
    (out / WEIGHTS).write_bytes(b"junk")
    unreadable = r"g/generator\.safetensors: not a readable safetensors file \((?!None)\S"  # the reader's own reason
    with pytest.raises(CheckpointError, match=unreadable):
        load_generator(out)
    (out / WEIGHTS).write_bytes(st_save({"alpha_bar": torch.zeros(3)}))
    with pytest.raises(CheckpointError, match=r"g/generator\.safetensors: weights do not fit \S+/g/generator\.json "
                                              r"\(Error\(s\) in loading state_dict"):
        load_generator(out)
    (out / WEIGHTS).write_bytes(good)
    load_generator(out)


def test_a_missing_generator_config_says_what_folder_was_expected(tmp_path: Path) -> None:
    _, out = _saved(tmp_path)
    (out / CONFIG).unlink()
    with pytest.raises(CheckpointError, match=r"g/generator\.json: missing; expected a generator folder written by "
                                              r"`accord augment fit`$"):
        load_generator(out)


def test_the_training_ids_digest_is_the_sha256_of_the_newline_joined_ids() -> None:
    """The digest is stored in generator folders and sample folders and compared across versions: its form is fixed."""
    assert ids_digest(["a", "b", "é"]) == hashlib.sha256("a\nb\né".encode()).hexdigest()
