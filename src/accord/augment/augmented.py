"""QASA training data (METHODS.md §4): the training split plus K generated audio/visual variants per real row.

Every real training row keeps weight 1; each of its K generated rows keeps the real text and label, carries
generated audio/visual features, and is weighted in the loss by its quality (the trainer honours
``extras["sample_weight"]`` on every loss term; docs/qasa.md, "Sample weights"). The ablations of the paper are
weightings of the same rows:

============  ==========================================================================================
weighting     loss weight of a generated row
============  ==========================================================================================
quality       q = q_fid · q_con  (QASA)
uniform       1 (generation without quality scoring)
fidelity      q_fid only
consistency   q_con only
============  ==========================================================================================

and ``source: noise`` adds K Gaussian-noise copies per real row instead (audio/visual + N(0, (λ·σ_feature)²), weight
1): augmentation of the same budget without a generator. Validation and test are never augmented.

Extras of the augmented split: ``generated`` (0/1), ``source_index`` (row of the real training split it came from),
``variant`` (−1 for real rows, 0..K−1), ``sample_weight``, and the scores ``quality``, ``q_fid``, ``q_con``,
``q_fid_<m>``, ``q_con_<m>`` (real rows are scored too, leave-one-out / out-of-fold, for comparison; NaN where a
row was not scored). A sample folder (``accord augment sample``) is a dataset in the safe format whose training
split is exactly this, so ``accord data info`` and numpy can inspect every score.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from accord.augment.diffusion import (
    CONFIG as GENERATOR_CONFIG,
)
from accord.augment.diffusion import (
    FeatureDiffusion,
    fit_generator,
    ids_digest,
    load_generator,
    read_generator_config,
)
from accord.augment.params import AugmentConfig, Weighting
from accord.augment.quality import CONFIG as SCORER_CONFIG
from accord.augment.quality import QualityScorer, fit_scorer, load_scorer
from accord.core.errors import ConfigError, DataError
from accord.core.io import write_json
from accord.core.types import MODALITIES
from accord.data.dataset import MultimodalDataset, SplitData
from accord.data.safe import MANIFEST, load_dataset_dir, save_dataset

SCORE_KEYS: tuple[str, ...] = ("quality", "q_fid", "q_con")
WEIGHT_KEY = {"quality": "quality", "fidelity": "q_fid", "consistency": "q_con"}
Log = Callable[[str], None]


def _check_concatenable(parts: list[SplitData]) -> None:
    """Every part has the first one's extras keys, padded lengths and feature dims (else a DataError)."""
    first = parts[0]
    keys = set(first.extras)
    for p in parts[1:]:
        if set(p.extras) != keys:
            raise DataError(f"cannot concatenate splits with extras {sorted(keys)} and {sorted(p.extras)}")
        if p.seq_lens() != first.seq_lens() or p.dims() != first.dims():
            raise DataError(f"cannot concatenate splits shaped {first.seq_lens()}/{first.dims()} and "
                            f"{p.seq_lens()}/{p.dims()}")


def _cat(tensors: list[Tensor | None]) -> Tensor | None:
    """``torch.cat`` of ``tensors``, or None when any is None (a label kind not every part has)."""
    present = [t for t in tensors if t is not None]
    return torch.cat(present) if len(present) == len(tensors) else None


def _cat_each(dicts: list[dict[str, Tensor]], keys: Iterable[str]) -> dict[str, Tensor]:
    """Per key of ``keys``, ``torch.cat`` of that entry of every mapping of ``dicts``."""
    return {k: torch.cat([d[k] for d in dicts]) for k in keys}


def concat_splits(parts: list[SplitData]) -> SplitData:
    """Rows of ``parts`` one after another (same modalities, padded lengths, extras keys and label kinds)."""
    _check_concatenable(parts)
    first = parts[0]
    texts = [p.raw_text for p in parts]
    return SplitData(
        features=_cat_each([p.features for p in parts], MODALITIES),
        lengths=_cat_each([p.lengths for p in parts], MODALITIES),
        labels=torch.cat([p.labels for p in parts]),
        ids=[i for p in parts for i in p.ids],
        raw_text=[t for r in texts for t in r] if all(texts) else [],
        class_labels=_cat([p.class_labels for p in parts]),
        unimodal_labels=_cat_each([p.unimodal_labels for p in parts], first.unimodal_labels),
        extras=_cat_each([p.extras for p in parts], first.extras),
        text_tokens=_cat_tokens([p.text_tokens for p in parts]),
    )


def _cat_tokens(tokens: list[Tensor | None]) -> Tensor | None:
    """Text tokens ``[N_i, 3, L_i]`` of every part, right-padded to the widest and concatenated (generated rows
    keep their real row's transcript, so a pretrained text branch reads them); ``None`` unless every part has
    them."""
    if any(t is None for t in tokens):
        return None
    present = [t for t in tokens if t is not None]
    width = max(int(t.shape[2]) for t in present)
    return torch.cat([torch.nn.functional.pad(t, (0, width - int(t.shape[2]))) for t in present])


def _copies(real: SplitData, k: int) -> tuple[SplitData, Tensor, Tensor]:
    """K copies of every real row, variant-major (rows 0..N−1 are variant 0, ...), with source and variant ids."""
    n = len(real)
    source = torch.arange(n).repeat(k)
    variant = torch.arange(k).repeat_interleave(n)
    rows = real.subset(source)
    rows.ids = [f"{real.ids[s]}#g{v}" for s, v in zip(source.tolist(), variant.tolist(), strict=True)]
    return rows, source, variant


def generated_rows(real: SplitData, generator: FeatureDiffusion, scorer: QualityScorer | None, k: int,
                   seed: int = 0) -> SplitData:
    """K generated rows per real row of ``real`` (the TRAINING split the generator was fitted on).

    Text, label, lengths and other metadata are the real row's; the generated modalities come from
    :meth:`FeatureDiffusion.generate`; extras ``generated = 1``, ``source_index``, ``variant`` and, with a
    ``scorer``, the quality scores. ``sample_weight`` is left to :func:`augment_split`.
    """
    rows, source, variant = _copies(real, k)
    new = generator.generate(real, source, seed=seed)
    for m, x in new.items():
        rows.features[m] = x
    rows.extras.update(generated=torch.ones(len(rows), dtype=torch.long), source_index=source, variant=variant)
    if scorer is not None:
        rows.extras.update(scorer.score_split(rows, source=source))
    return rows


def feature_std(split: SplitData, m: str) -> Tensor:
    """Per-dimension std of modality ``m`` over the real steps of ``split`` (1 for constant columns)."""
    x, lens = split.features[m], split.lengths[m]
    mask = (torch.arange(x.shape[1]).unsqueeze(0) < lens.unsqueeze(1)).unsqueeze(-1)
    count = mask.sum().clamp_min(1)
    mean = (x * mask).sum(dim=(0, 1)) / count
    std = ((((x - mean) * mask) ** 2).sum(dim=(0, 1)) / count).sqrt()
    return torch.where(std < 1e-6, torch.ones_like(std), std)


def noise_rows(real: SplitData, k: int, level: float, modalities: list[str], seed: int = 0) -> SplitData:
    """The Gaussian-noise ablation: K copies per real row with ``x + level·σ·ε`` on ``modalities`` (σ the
    per-feature std of the training split, real steps only; padding stays zero)."""
    rows, source, variant = _copies(real, k)
    gen = torch.Generator().manual_seed(seed)
    for m in modalities:
        x, lens = rows.features[m], rows.lengths[m]
        mask = (torch.arange(x.shape[1]).unsqueeze(0) < lens.unsqueeze(1)).unsqueeze(-1)
        rows.features[m] = (x + level * feature_std(real, m) * torch.randn(x.shape, generator=gen)) * mask
    rows.extras.update(generated=torch.ones(len(rows), dtype=torch.long), source_index=source, variant=variant)
    return rows


def generated_weights(rows: SplitData, weighting: Weighting | None) -> Tensor:
    """Loss weight per generated row: q, q_fid, q_con, or 1 (``uniform``, and ``None`` for noise copies)."""
    if weighting is None or weighting == "uniform":
        return torch.ones(len(rows))
    key = WEIGHT_KEY[weighting]
    if key not in rows.extras:
        raise DataError(f"augment.weighting: {weighting!r} needs the score {key!r}, but the generated rows carry "
                        f"none (they were not scored)")
    w = rows.extras[key].float()
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()) or bool((w > 1).any()):
        raise DataError(f"generated rows: score {key!r} must be finite and in [0, 1]")
    return w


def augment_split(real: SplitData, generated: SplitData, weighting: Weighting | None,
                  real_scores: dict[str, Tensor] | None = None) -> SplitData:
    """Real rows (weight 1, ``generated = 0``) followed by ``generated`` rows weighted by ``weighting``.

    Score extras present on the generated rows are given to the real rows too (``real_scores`` or NaN)."""
    n = len(real)
    gen = dataclasses.replace(generated, extras=dict(generated.extras))
    gen.extras["sample_weight"] = generated_weights(gen, weighting)
    head = dataclasses.replace(real, extras=dict(real.extras))
    head.extras.update(generated=torch.zeros(n, dtype=torch.long), source_index=torch.arange(n),
                       variant=torch.full((n,), -1, dtype=torch.long), sample_weight=torch.ones(n))
    for key, v in gen.extras.items():
        if key not in head.extras:
            given = (real_scores or {}).get(key)
            head.extras[key] = given.to(v.dtype) if given is not None else torch.full((n, *v.shape[1:]), math.nan,
                                                                                       dtype=v.dtype)
    return concat_splits([head, gen])


# ---------------------------------------------------------------------------------------------------- folders
def _check_digest(train: SplitData, digest: str | None, where: Path) -> None:
    if digest is not None and digest != ids_digest(list(train.ids)):
        raise ConfigError(
            f"augment.source: {where} was fitted on a different training split than this run's "
            f"({len(train)} rows; check data.name/params/train_fraction); fit it again on this data")


def fit_generator_dir(ds: MultimodalDataset, aug: AugmentConfig, out_dir: str | Path | None,
                      data_config: dict[str, Any] | None = None, log: Log | None = None
                      ) -> tuple[FeatureDiffusion, QualityScorer]:
    """Fit the generator and the quality scorer on ``ds["train"]`` and save both to ``out_dir`` (unless None).

    ``out_dir`` gets ``generator.{safetensors,json}`` and ``scorer.{safetensors,json}``; the JSON records the
    data config (``data_config``) so ``accord augment sample`` can rebuild the same training split.
    """
    train = ds["train"]
    generator = fit_generator(train, aug.generator, ds.label_range, aug.seed, log)
    scorer = fit_scorer(train, aug.scorer, aug.generator.modalities, aug.seed)
    generator.info.update({"data": data_config or {}, "dataset": ds.name, "source": ds.source})
    if out_dir is not None:
        generator.save(out_dir)
        scorer.save(out_dir)
    return generator, scorer


def load_generator_dir(path: str | Path) -> tuple[FeatureDiffusion, QualityScorer]:
    """Generator and scorer of a folder written by :func:`fit_generator_dir`."""
    return load_generator(path), load_scorer(path)


def sample_dataset(ds: MultimodalDataset, generator_dir: str | Path, k: int, seed: int = 0,
                   provenance: dict[str, Any] | None = None) -> MultimodalDataset:
    """:func:`build_sampled_dataset` with the generator and scorer of a folder written by
    :func:`fit_generator_dir`, after checking they were fitted on ``ds``'s training split."""
    root = Path(generator_dir)
    generator, scorer = load_generator_dir(root)
    _check_digest(ds["train"], generator.info.get("train_ids_sha256"), root)
    return build_sampled_dataset(ds, generator, scorer, k, seed, provenance)


def build_sampled_dataset(ds: MultimodalDataset, generator: FeatureDiffusion, scorer: QualityScorer, k: int,
                          seed: int = 0, provenance: dict[str, Any] | None = None) -> MultimodalDataset:
    """``ds`` with its training split replaced by the augmented one (QASA weights, all scores), for saving."""
    train = ds["train"]
    _check_digest(train, generator.info.get("train_ids_sha256"), Path("generator"))
    gen = generated_rows(train, generator, scorer, k, seed)
    real_scores = scorer.score_split(train, source=torch.arange(len(train)))
    aug = augment_split(train, gen, "quality", real_scores)
    g = gen.extras
    summary = {k2: {"mean": float(g[k2].mean()), "std": float(g[k2].std()) if len(gen) > 1 else 0.0}
               for k2 in g if k2.startswith("q") and g[k2].dtype.is_floating_point}
    meta = {**ds.meta, "qasa": {"per_sample": k, "seed": seed, "generated_rows": len(gen), "real_rows": len(train),
                                "generated_scores": summary, **(provenance or {})}}
    return dataclasses.replace(ds, splits={**ds.splits, "train": aug}, meta=meta)


def _from_sample_dir(path: Path, train: SplitData, aug: AugmentConfig) -> SplitData:
    saved = load_dataset_dir(path)["train"]
    for key in ("generated", "variant", "source_index"):
        if key not in saved.extras:
            raise ConfigError(f"augment.source: {path} has no extra {key!r} in its training split; expected a "
                              "sample folder written by `accord augment sample`")
    is_gen = saved.extras["generated"] == 1
    real_rows = (~is_gen).nonzero().flatten()
    if [saved.ids[i] for i in real_rows.tolist()] != list(train.ids):
        raise ConfigError(f"augment.source: the real rows of {path} are not this run's training split "
                          f"({len(real_rows)} vs {len(train)} rows; check data.name/params/train_fraction)")
    have = int(saved.extras["variant"][is_gen].max()) + 1 if bool(is_gen.any()) else 0
    if have < aug.per_sample:
        raise ConfigError(f"augment.per_sample: {aug.per_sample} requested but {path} holds {have} generated rows "
                          "per real row")
    keep = (is_gen & (saved.extras["variant"] < aug.per_sample)).nonzero().flatten()
    gen = saved.subset(keep)
    gen.extras.pop("sample_weight", None)
    real_scores = {k: v[real_rows] for k, v in saved.extras.items() if k.startswith("q")}
    return augment_split(train, gen, aug.weighting, real_scores)


def augmented_train_split(aug: AugmentConfig, ds: MultimodalDataset, data_config: dict[str, Any] | None = None,
                          save_dir: str | Path | None = None, log: Log | None = None) -> SplitData:
    """The training split a run with ``augment.source != none`` trains on (the trainer's entry point).

    ``source``: ``noise`` (Gaussian copies), ``fit`` (fit generator and scorer on ``ds["train"]`` now, saved to
    ``save_dir/generator``), a generator folder (sampled now with ``augment.seed``), or a sample folder (its first
    ``per_sample`` variants). Freshly generated rows are saved with their scores to ``save_dir/samples``.
    """
    train = ds["train"]
    if aug.source == "none":
        return train
    if aug.source == "noise":
        return augment_split(train, noise_rows(train, aug.per_sample, aug.noise_level, aug.generator.modalities,
                                               aug.seed), None)
    save = Path(save_dir) if save_dir is not None else None
    if aug.source == "fit":
        if log:
            log(f"augment: fitting the generator and the quality scorer on {len(train)} training rows")
        generator, scorer = fit_generator_dir(ds, aug, save / "generator" if save else None,
                                              data_config, log)
    else:
        path = Path(aug.source)
        if (path / MANIFEST).is_file():
            return _from_sample_dir(path, train, aug)
        if not (path / GENERATOR_CONFIG).is_file() or not (path / SCORER_CONFIG).is_file():
            raise ConfigError(f"augment.source: {path} is not none, fit, noise, a generator folder (generator.json "
                              "and scorer.json, from `accord augment fit`) or a sample folder (manifest.json, from "
                              "`accord augment sample`)")
        read_generator_config(path)
        generator, scorer = load_generator_dir(path)
        _check_digest(train, generator.info.get("train_ids_sha256"), path)
        _check_digest(train, scorer.info.get("train_ids_sha256"), path)
    full = build_sampled_dataset(ds, generator, scorer, aug.per_sample, aug.seed, {"source": aug.source})
    if save is not None:
        save_dataset(full, save / "samples")
        write_json(save / "augment.json", aug.model_dump(mode="json"))
    aug_train = full["train"]
    if aug.weighting != "quality":
        is_gen = aug_train.extras["generated"] == 1
        aug_train.extras["sample_weight"][is_gen] = generated_weights(aug_train.subset(is_gen.nonzero().flatten()),
                                                                      aug.weighting)
    return aug_train

