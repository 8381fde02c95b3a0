"""Mechanism probes: does a trained method's mechanism do what its paper says? (issue 17)

Accuracy alone cannot show that a component works; each probe measures the mechanism itself on a trained run
(every seed's selected checkpoint, on one split), and ``accord probe RUN`` prints them:

``cacr``
    ``hn_rise_<m>``: the relative rise of the cross-reconstruction error ``l_m`` (METHODS §1.3) when the other
    modalities' shared features ``H_n`` are permuted across the batch (``(l_perm - l) / l``, mean over samples):
    ~0 when ``X~_m`` is rebuilt from ``P_m`` alone (the shortcut), large when the reconstruction uses ``H_n``.
    ``hn_rise`` is the mean over modalities. On data with planted conflicts (ConflictBench's
    ``extras["conflict_modality"]``) also ``auroc_planted``: the AUROC of the conflict score ``C_m`` of the
    flipped modality (audio, visual) against consistent samples, averaged over the two.
``ebmc``
    ``trust_<m>``, ``trust_dropped_<m>``, ``trust_noised_<m>``: the mean trust ``w_m`` on the clean split, with
    ``m`` marked missing, and with ``m``'s features replaced by noise of their own scale (``noise:<m>:1``): trust
    should fall for a missing or noised modality. ``shared_cos``: the mean cosine between the modalities' pooled
    shared features ``h_m`` (over the three pairs): near 1 when the shared space is shared.
``conflict_penalty`` (CP+SL, or any run with that hook)
    From the training log: ``projected_share`` (fraction of steps on which the projection fired),
    ``conflict_share`` (steps with ``max r_m > kappa``), ``r_max`` (mean of the per-epoch means).
``self_mm``
    From the training log: ``drift_<m>``, the mean ``|y_s - y_m|`` of the generated unimodal labels over the
    memory at the last epoch, and ``drift_max_<m>`` over all epochs.
``qasa`` (any run trained with ``augment``)
    ``weight_error_corr``: the Spearman correlation, over the generated training rows, between a row's loss
    weight (its quality) and the trained model's absolute error on it: negative when quality tracks usefulness.

Results are saved to ``<run>/probe_<split>.json`` (per seed and mean ± std) and read by ``accord report``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from accord.augment.augmented import WEIGHT_KEY
from accord.config import Config
from accord.core import rundir
from accord.core.errors import DataError
from accord.core.io import write_json
from accord.core.types import MODALITIES
from accord.data.corrupt import apply_corruptions, parse_corruption
from accord.data.dataset import MultimodalDataset, SplitData
from accord.data.safe import MANIFEST, load_dataset_dir
from accord.evaluation.summary import aggregate, aggregate_json
from accord.models.base import AccordModel
from accord.models.modules import masked_mean
from accord.objectives.decoupling import reconstruction_error
from accord.training.evaluation import predict_split
from accord.training.text_tokens import prepare_inputs
from accord.training.trainer import build_dataset, load_model, load_run, resolve_device

__all__ = ["PROBES", "auroc", "cacr_dependence", "label_ceiling", "probe_run", "probes_for", "spearman"]

PROBE_BATCH = 512
"""Rows per forward pass of a probe (the H_n permutation runs within each such batch)."""


@dataclass
class ProbeContext:
    """What a probe sees: one seed's model, the split, the run's config and the seed's folder."""

    model: AccordModel
    split: SplitData
    cfg: Config
    seed_dir: Path
    device: torch.device


def _batches(split: SplitData, device: torch.device) -> list[Any]:
    idx = torch.arange(len(split))
    return [split.batch(idx[a:a + PROBE_BATCH]).to(device) for a in range(0, len(split), PROBE_BATCH)]


def auroc(score: np.ndarray, positive: np.ndarray, negative: np.ndarray) -> float:
    """AUROC of ``score`` separating ``positive`` from ``negative`` rows (ties count 1/2); NaN if one is empty."""
    pos, neg = score[positive], score[negative]
    if not len(pos) or not len(neg):
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    allv = np.concatenate([pos, neg])[order]
    i = 0
    while i < len(allv):  # average ranks over ties
        j = i
        while j + 1 < len(allv) and allv[j + 1] == allv[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


@torch.no_grad()
def cacr_dependence(model: Any, batch: Any, generator: torch.Generator) -> dict[str, float]:
    """Mean ``l_m`` with ``H_n`` intact and permuted across ``batch`` (one permutation for all n), per modality:
    ``{rec_<m>, rec_perm_<m>}``. ``model`` is a CACR with cross-reconstruction."""
    if model.crm is None:
        return {}
    x, shared, private, mask = model.decoupling(batch.features, batch.mask)
    perm = torch.randperm(batch.size, generator=generator).to(batch.label.device)
    out: dict[str, float] = {}
    intact = model.crm(shared, private, mask)
    permuted = model.crm({m: v[perm] for m, v in shared.items()}, private, mask,
                         {m: v[perm] for m, v in mask.items()})
    for m in MODALITIES:
        rows = mask[m].any(dim=1)
        out[f"rec_{m}"] = float(reconstruction_error(intact[m], x[m], mask[m])[rows].sum())
        out[f"rec_perm_{m}"] = float(reconstruction_error(permuted[m], x[m], mask[m])[rows].sum())
    return out


@torch.no_grad()
def label_ceiling(x: dict[str, Tensor], mask: dict[str, Tensor], label: Tensor, generator: torch.Generator
                  ) -> dict[str, float]:
    """What ``hn_rise_<m>`` could at most be if ``H_n`` carried the label and nothing else of the sample: each step
    of the target ``x[m] [N, T, d]`` is fitted by least squares on ``[1, y, |y|]`` (the label's information), and
    the rise of ``l_m`` is measured for that fit with the labels permuted across the rows (``ceiling_<m>``; mean
    ``ceiling``, over the modalities present somewhere in the split). Data with little label-related variance in
    ``X_m`` cannot show a large H_n-dependence, whatever the model does."""
    y = label.float().reshape(label.shape[0], -1)[:, :1]
    perm = torch.randperm(y.shape[0], generator=generator).to(y.device)
    feats = torch.cat([torch.ones_like(y), y, y.abs()], dim=1)
    out: dict[str, float] = {}
    for m in MODALITIES:
        fit, fit_perm = torch.zeros_like(x[m]), torch.zeros_like(x[m])
        for t in range(x[m].shape[1]):
            rows = mask[m][:, t]
            if int(rows.sum()) < 4:
                continue
            coef = torch.linalg.lstsq(feats[rows], x[m][rows, t]).solution
            fit[rows, t] = feats[rows] @ coef
            fit_perm[rows, t] = feats[perm][rows] @ coef
        rows = mask[m].any(dim=1)
        if not bool(rows.any()):  # a modality absent from the whole split (e.g. MOSI's visual): no ceiling
            out[f"ceiling_{m}"] = float("nan")
            continue
        base = reconstruction_error(fit, x[m], mask[m])[rows].sum()
        out[f"ceiling_{m}"] = float((reconstruction_error(fit_perm, x[m], mask[m])[rows].sum() - base) / base)
    have = [out[f"ceiling_{m}"] for m in MODALITIES if math.isfinite(out[f"ceiling_{m}"])]
    out["ceiling"] = float(np.mean(have)) if have else float("nan")
    return out


def probe_cacr(ctx: ProbeContext) -> dict[str, float]:
    """H_n-dependence of the reconstruction and, with planted conflicts, the conflict score's AUROC."""
    model: Any = ctx.model  # a CACR: its decoupling and crm are read directly
    gen = torch.Generator().manual_seed(0)
    sums: dict[str, float] = {}
    for batch in _batches(ctx.split, ctx.device):
        for k, v in cacr_dependence(model, batch, gen).items():
            sums[k] = sums.get(k, 0.0) + v
    res: dict[str, float] = {}
    if sums:
        rises = []
        for m in MODALITIES:
            base = sums[f"rec_{m}"]
            rise = (sums[f"rec_perm_{m}"] - base) / base if base > 0 else float("nan")
            res[f"hn_rise_{m}"] = rise
            rises.append(rise)
        res["hn_rise"] = float(np.nanmean(rises))
        if ctx.cfg.task.kind == "regression":
            with torch.no_grad():
                whole = ctx.split.batch(torch.arange(len(ctx.split))).to(ctx.device)
                x, _, _, mask = model.decoupling(whole.features, whole.mask)
            res.update(label_ceiling(x, mask, whole.label, gen))
    which = ctx.split.extras.get("conflict_modality")
    if which is not None:
        _, diag = predict_split(model, ctx.split, ctx.cfg.task.kind, PROBE_BATCH, ctx.device)
        w = which.numpy()
        none = w == -1
        aud = auroc(diag["conflict_audio"], w == MODALITIES.index("audio"), none)
        vis = auroc(diag["conflict_visual"], w == MODALITIES.index("visual"), none)
        res.update({"auroc_audio": aud, "auroc_visual": vis, "auroc_planted": (aud + vis) / 2})
    return res


def _mean_trust(model: AccordModel, split: SplitData, cfg: Config, device: torch.device) -> dict[str, float]:
    _, diag = predict_split(model, split, cfg.task.kind, PROBE_BATCH, device)
    return {m: float(np.mean(diag[f"trust_{m}"])) for m in MODALITIES}


@torch.no_grad()
def probe_ebmc(ctx: ProbeContext) -> dict[str, float]:
    """Trust on clean, dropped and noised modalities; cross-modal cosine of the pooled shared features."""
    model, split = ctx.model, ctx.split
    res = {f"trust_{m}": v for m, v in _mean_trust(model, split, ctx.cfg, ctx.device).items()}
    for m in MODALITIES:
        for kind, key in (("drop", "dropped"), ("noise", "noised")):
            part = apply_corruptions(split, [parse_corruption(f"{kind}:{m}:1.0:0")])
            res[f"trust_{key}_{m}"] = _mean_trust(model, part, ctx.cfg, ctx.device)[m]
    cos: list[float] = []
    for batch in _batches(split, ctx.device):
        _, shared, _, mask = model.decoupling(batch.features, batch.mask)  # type: ignore[operator]
        pooled = {m: masked_mean(shared[m], mask[m]) for m in MODALITIES}
        for a, b in ((0, 1), (0, 2), (1, 2)):
            ma, mb = MODALITIES[a], MODALITIES[b]
            both = mask[ma].any(dim=1) & mask[mb].any(dim=1)
            c = torch.nn.functional.cosine_similarity(pooled[ma][both], pooled[mb][both], dim=-1)
            cos += c.tolist()
    res["shared_cos"] = float(np.mean(cos)) if cos else float("nan")
    return res


def _epochs(seed_dir: Path) -> list[dict[str, Any]]:
    log = seed_dir / rundir.LOG
    if not log.is_file():
        raise DataError(f"{log}: missing (the probe reads the training log)")
    return rundir.read_log(log, "epoch")


def probe_cp(ctx: ProbeContext) -> dict[str, float]:
    """Share of steps on which CP's projection fired / a norm conflict was detected, and the mean r_max."""
    epochs = _epochs(ctx.seed_dir)
    res: dict[str, float] = {}
    for key, name in (("cp/projected", "projected_share"), ("cp/conflict", "conflict_share"), ("cp/r_max", "r_max")):
        vals = [float(e[key]) for e in epochs if key in e]
        res[name] = float(np.mean(vals)) if vals else float("nan")
    return res


def probe_self_mm(ctx: ProbeContext) -> dict[str, float]:
    """Drift of ULGM's generated unimodal labels from the multimodal label (last epoch and maximum)."""
    epochs = _epochs(ctx.seed_dir)
    res: dict[str, float] = {}
    for m in MODALITIES:
        vals = [float(e[f"ulgm_drift_{m}"]) for e in epochs if f"ulgm_drift_{m}" in e]
        res[f"drift_{m}"] = vals[-1] if vals else float("nan")
        res[f"drift_max_{m}"] = max(vals) if vals else float("nan")
    return res


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of ``a`` and ``b`` (ties broken by order); NaN for fewer than 3 rows or a constant
    input."""
    if len(a) < 3 or np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def probe_qasa(ctx: ProbeContext) -> dict[str, float]:
    """Spearman correlation between a generated row's loss weight (the run's ``augment.weighting``: q, q_fid or
    q_con) and the trained model's error on it (absolute error; cross-entropy for classification), over the
    generated training rows the run used (``<run>/augment/samples``). Nothing for ``uniform`` weights."""
    key = WEIGHT_KEY.get(ctx.cfg.augment.weighting)
    folder = ctx.seed_dir.parent / "augment" / "samples"
    if key is None or not (folder / MANIFEST).is_file():
        return {}
    train = load_dataset_dir(folder)["train"]
    used = (train.extras["generated"] == 1) & (train.extras["variant"] < ctx.cfg.augment.per_sample)
    if not bool(used.any()):
        return {}
    rows = train.subset(used.nonzero().flatten())
    pred, _ = predict_split(ctx.model, rows, ctx.cfg.task.kind, PROBE_BATCH, ctx.device)
    assert pred is not None
    if pred.ndim == 1:
        err = np.abs(pred - rows.labels.numpy())
    else:
        classes = rows.class_labels
        assert classes is not None, "a classification run's rows have class labels"
        err = -np.log(np.take_along_axis(_softmax(pred), classes.numpy()[:, None], 1)[:, 0] + 1e-12)
    return {"weight_error_corr": spearman(rows.extras[key].numpy(), err), "generated_rows": float(len(rows))}


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


PROBES: dict[str, Callable[[ProbeContext], dict[str, float]]] = {
    "cacr": probe_cacr, "ebmc": probe_ebmc, "conflict_penalty": probe_cp, "self_mm": probe_self_mm,
    "qasa": probe_qasa,
}
"""Probe name -> probe; a run gets the probes of its model, of its hooks and ``qasa`` when it was augmented."""


def probes_for(cfg: Config) -> list[str]:
    """The probes that apply to a run with config ``cfg``."""
    from accord.config import model_hook_requests

    names = [cfg.model.name] if cfg.model.name in PROBES else []
    hooks = [h.name for h in cfg.train.hooks] + [h.name for h in model_hook_requests(cfg)]
    names += [h for h in dict.fromkeys(hooks) if h in PROBES]
    if cfg.augment.enabled:
        names.append("qasa")
    return names


def probe_run(run_dir: str | Path, split: str = "test", write: bool = True,
              dataset: MultimodalDataset | None = None) -> dict[str, Any]:
    """Run every probe that applies to ``run_dir`` on each seed's selected checkpoint; returns (and with ``write``
    saves to ``<run>/probe_<split>.json``) ``{run, method, probes, per_seed, mean_std, markdown}``."""
    cfg, _ = load_run(run_dir)
    names = probes_for(cfg)
    if not names:
        raise DataError(f"{run_dir}: no mechanism probe for method {cfg.model.name!r} "
                        f"(probes exist for: {', '.join(PROBES)})")
    ds = prepare_inputs(dataset or build_dataset(cfg.data.name, cfg.data.path, cfg.data.params), cfg.data,
                        cfg.model.params)
    part = ds[split]
    dev = resolve_device(cfg.train.device)
    per_seed: dict[str, dict[str, float]] = {}
    for sd in rundir.seed_dirs(run_dir, with_checkpoint=True):
        model = load_model(run_dir, rundir.seed_of(sd), dev)
        ctx = ProbeContext(model, part, cfg, sd, dev)
        vals: dict[str, float] = {}
        for name in names:
            vals.update(PROBES[name](ctx))
        per_seed[sd.name] = vals
    agg = aggregate(list(per_seed.values()))
    result: dict[str, Any] = {"run": str(run_dir), "method": cfg.model.name, "split": split, "probes": names,
                              "per_seed": per_seed, "mean_std": aggregate_json(agg)}
    if write:
        write_json(Path(run_dir) / f"probe_{split}.json", result)
    result["markdown"] = probe_markdown(result)
    return result


def probe_markdown(result: dict[str, Any]) -> str:
    """A probe result (:func:`probe_run`, or its saved JSON) as a Markdown table: one row per measure."""
    lines = [f"**{result['run']}**: mechanism probes ({', '.join(result['probes'])}) on {result['split']}, "
             f"{len(result['per_seed'])} seed(s)", "", "| measure | mean ± std | seeds |", "|:---|---:|---:|"]
    for key, agg in result["mean_std"].items():
        lines.append(f"| {key} | {agg['mean']:.3f} ± {agg['std']:.3f} | {agg['n']} |")
    return "\n".join(lines) + "\n"
