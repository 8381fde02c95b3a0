"""QASA's decoupled quality scorer (METHODS.md §4): fidelity q_fid and consistency q_con, each in [0, 1].

The paper scores generated images/audio with multimodal LLMs. Here both scores are small models fitted on the real
TRAINING split only (paper leaves the form of the scores open; we use):

- **fidelity** (is it like real data of that modality) — a *typicality* score: with ``d(x)`` the mean Euclidean
  distance to the k nearest real training rows of that modality (standardised utterance vector, or masked
  mean ⊕ std of a sequence; the sample's own source row left out),

      q_fid = min(1, S(d(x)) / τ),   S(d) = share of real rows whose leave-one-out distance is ≥ d,

  so a sample as typical as the median real row (τ = 0.5) scores 1 and one farther out than every real row 0;
- **consistency** (does it agree with its text and label) — a ridge regressor ``g(text, x_m) -> y`` (separate
  penalties for the text and the modality block, chosen by out-of-fold MAE; cross-fitted over folds of whole
  groups/videos, so a generated row is scored by the fold model that never saw its source row). With
  ``Δ = |y − g(t, x)| − |y − g(t, x̄)|``, how much the modality pushes the sentiment estimate AWAY from the label
  compared with the modality at its training mean x̄,

      q_con = exp(−max(0, Δ) / MAE_oof),

  so a modality that supports its label (Δ ≤ 0) scores 1, one that moves the estimate one typical error away scores
  e⁻¹. A modality that carries no label information (on MOSI-U: audio) gets a near-zero block weight and scores ≈ 1
  for any input: nothing can contradict a label through it. Unlike a plain unimodal regressor residual, Δ does not
  penalise extreme labels, and unlike the raw residual of ``g`` it does not score the source row's text.

Per generated sample the per-modality scores are combined by a geometric mean over the generated modalities
(paper leaves the combination open), and the QASA weight is ``q = q_fid · q_con`` (METHODS.md §4).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import Tensor

from accord.augment.diffusion import _column_stats, ids_digest, summary_vector
from accord.augment.params import ScorerParams
from accord.core.errors import CheckpointError, DataError
from accord.core.io import atomic_write_bytes, read_json_file, write_json
from accord.data.dataset import SplitData
from accord.data.subset import group_of

FORMAT = "accord-qasa-scorer"
VERSION = 1
WEIGHTS = "scorer.safetensors"
CONFIG = "scorer.json"


def survival(sorted_ref: Tensor, values: Tensor) -> Tensor:
    """S(a) = share of ``sorted_ref`` (ascending) that is ≥ each value, in [0, 1]."""
    below = torch.searchsorted(sorted_ref.contiguous(), values.contiguous().to(sorted_ref.dtype), right=False)
    return 1.0 - below.to(torch.float64) / max(len(sorted_ref), 1)


def saturate(s: Tensor, tau: float) -> Tensor:
    """min(1, S/τ): the typicality score, 1 for anything at least as typical as the τ-quantile real row."""
    return (s / tau).clamp(0.0, 1.0)


def knn_distance(queries: Tensor, ref: Tensor, k: int, exclude: Tensor | None = None,
                 batch_size: int = 4096) -> Tensor:
    """Mean distance of each query to its ``k`` nearest rows of ``ref``; ``exclude [n]`` (row index into ``ref``,
    −1 for none) leaves one reference row out per query (the query's own source)."""
    k = min(k, len(ref) - (0 if exclude is None else 1))
    if k < 1:
        raise DataError(f"fidelity needs at least {1 if exclude is None else 2} real rows, got {len(ref)}")
    out = []
    for start in range(0, len(queries), batch_size):
        d = torch.cdist(queries[start:start + batch_size].double(), ref.double())
        if exclude is not None:
            ex = exclude[start:start + batch_size]
            rows = (ex >= 0).nonzero().flatten()
            d[rows, ex[rows]] = float("inf")
        out.append(d.topk(k, dim=1, largest=False).values.mean(dim=1))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def ridge_fit(x: Tensor, y: Tensor, alpha: float | Tensor) -> Tensor:
    """Ridge regression with an unpenalised intercept: weights ``[P + 1]`` (last entry the intercept); ``alpha``
    is one penalty or one per column."""
    xm, ym = x.mean(dim=0), y.mean()
    xc = x - xm
    pen = torch.as_tensor(alpha, dtype=x.dtype).expand(x.shape[1])
    a = xc.T @ xc + torch.diag(pen)
    w = torch.linalg.solve(a, xc.T @ (y - ym))
    return torch.cat([w, (ym - xm @ w).reshape(1)])


def ridge_predict(x: Tensor, w: Tensor) -> Tensor:
    return x @ w[:-1] + w[-1]


def group_folds(ids: list[str], folds: int, seed: int = 0) -> Tensor:
    """Fold index per row, whole groups (id up to the last '_') per fold, groups dealt round-robin after a seeded
    permutation; with fewer than 2 groups, rows are dealt instead."""
    groups = sorted({group_of(i) for i in ids})
    rng = np.random.default_rng(seed)
    if len(groups) >= 2:
        k = min(folds, len(groups))
        order = rng.permutation(len(groups))
        fold_of_group = {groups[g]: n % k for n, g in enumerate(order.tolist())}
        return torch.tensor([fold_of_group[group_of(i)] for i in ids], dtype=torch.long)
    k = min(folds, len(ids))
    order = rng.permutation(len(ids))
    out = torch.empty(len(ids), dtype=torch.long)
    out[torch.from_numpy(order)] = torch.arange(len(ids)) % k
    return out


class QualityScorer:
    """Fitted fidelity and consistency models of the generated modalities (see the module docstring).

    Build with :func:`fit_scorer` or :func:`load_scorer`; score with :meth:`score`.
    """

    def __init__(self, params: ScorerParams, modalities: list[str], tensors: dict[str, Tensor],
                 info: dict[str, Any]) -> None:
        self.params, self.modalities, self.t, self.info = params, list(modalities), tensors, info

    def _summary(self, m: str, x: Tensor, lengths: Tensor) -> Tensor:
        return ((summary_vector(x, lengths).double() - self.t[f"{m}/s_mean"]) / self.t[f"{m}/s_std"])

    def _text(self, text: Tensor, lengths: Tensor) -> Tensor:
        return (summary_vector(text, lengths).double() - self.t["text/s_mean"]) / self.t["text/s_std"]

    def score(self, text: Tensor, text_lengths: Tensor, features: dict[str, Tensor], lengths: dict[str, Tensor],
              labels: Tensor, source: Tensor | None = None) -> dict[str, Tensor]:
        """Scores of ``n`` samples: ``q_fid_<m>``, ``q_con_<m>`` per scored modality and the combined ``q_fid``,
        ``q_con`` and ``quality = q_fid · q_con`` (float32 ``[n]``, all in [0, 1]).

        ``source [n]`` is each sample's source row in the training split the scorer was fitted on (−1: none):
        that row is left out of the fidelity neighbours, and consistency uses the fold model that never saw it.
        Without ``source`` the full-data regressor and all neighbours are used. A sample whose modality is
        missing (length 0) is not scored on it; with no scored modality its combined scores are 1.
        """
        n = int(labels.shape[0])
        src = torch.full((n,), -1, dtype=torch.long) if source is None else source.long()
        tau = self.params.tau
        ts = self._text(text, text_lengths)
        out: dict[str, Tensor] = {}
        log_fid = torch.zeros(n, dtype=torch.float64)
        log_con = torch.zeros(n, dtype=torch.float64)
        count = torch.zeros(n, dtype=torch.float64)
        fold_of: Tensor = self.t["fold_of"]
        for m in self.modalities:
            present = lengths[m] > 0
            s = self._summary(m, features[m], lengths[m])
            # fidelity: kNN distance to real rows, leaving the source row out
            ref_rows: Tensor = self.t[f"{m}/ref_rows"]
            pos = torch.full((int(fold_of.shape[0]),), -1, dtype=torch.long)
            pos[ref_rows] = torch.arange(len(ref_rows))
            exclude = torch.where(src >= 0, pos[src.clamp_min(0)], torch.full_like(src, -1))
            d = knn_distance(s, self.t[f"{m}/ref"], self.params.k, exclude)
            q_fid = saturate(survival(self.t[f"{m}/real_dist"], d), tau)
            # consistency: does the modality push the cross-fitted estimate away from the label?
            coef: Tensor = self.t[f"{m}/coef"]
            which = torch.where(src >= 0, fold_of[src.clamp_min(0)], torch.full_like(src, coef.shape[0] - 1))
            w = coef[which]
            base = (ts * w[:, :ts.shape[1]]).sum(dim=1) + w[:, -1]  # modality at its training mean (0 here)
            pred = base + (s * w[:, ts.shape[1]:-1]).sum(dim=1)
            yd = labels.double()
            delta = (yd - pred).abs() - (yd - base).abs()
            q_con = torch.exp(-delta.clamp_min(0) / self.t[f"{m}/scale"])
            q_fid = torch.where(present, q_fid, torch.ones_like(q_fid))
            q_con = torch.where(present, q_con, torch.ones_like(q_con))
            out[f"q_fid_{m}"], out[f"q_con_{m}"] = q_fid.float(), q_con.float()
            pw = present.double()
            log_fid += pw * q_fid.clamp_min(1e-12).log()
            log_con += pw * q_con.clamp_min(1e-12).log()
            count += pw
        q_fid_all = torch.where(count > 0, (log_fid / count.clamp_min(1)).exp(), torch.ones(n, dtype=torch.float64))
        q_con_all = torch.where(count > 0, (log_con / count.clamp_min(1)).exp(), torch.ones(n, dtype=torch.float64))
        q_fid_all = torch.where(q_fid_all < 1e-9, torch.zeros_like(q_fid_all), q_fid_all)
        q_con_all = torch.where(q_con_all < 1e-9, torch.zeros_like(q_con_all), q_con_all)
        out["q_fid"], out["q_con"] = q_fid_all.float(), q_con_all.float()
        out["quality"] = (q_fid_all * q_con_all).float()
        return out

    def score_split(self, split: SplitData, source: Tensor | None = None) -> dict[str, Tensor]:
        """:meth:`score` on every row of ``split``."""
        return self.score(split.features["text"], split.lengths["text"], split.features, split.lengths,
                          split.labels, source)

    # ------------------------------------------------------------------------------------------------ save/load
    def save(self, out_dir: str | Path) -> Path:
        """Write ``scorer.safetensors`` (reference rows, calibration, ridge weights) and ``scorer.json``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out / WEIGHTS, st_save({k: v.contiguous() for k, v in self.t.items()}))
        write_json(out / CONFIG, {"format": FORMAT, "version": VERSION, "params": self.params.model_dump(mode="json"),
                                  "modalities": self.modalities, **self.info})
        return out


def load_scorer(path: str | Path) -> QualityScorer:
    """A scorer saved by :meth:`QualityScorer.save`; errors name the file and what was expected."""
    root = Path(path)
    file = root / CONFIG
    cfg = read_json_file(file, CheckpointError, "a generator folder written by `accord augment fit`")
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT or cfg.get("version") != VERSION:
        raise CheckpointError(f"{file}: expected format {FORMAT!r} version {VERSION}")
    try:
        tensors = st_load((root / WEIGHTS).read_bytes())
    except FileNotFoundError:
        raise CheckpointError(f"{root / WEIGHTS}: missing (the scorer's reference data)") from None
    except (SafetensorError, ValueError, OSError) as err:
        raise CheckpointError(f"{root / WEIGHTS}: not a readable safetensors file ({str(err).splitlines()[0]})") \
            from None
    mods = list(cfg.get("modalities") or [])
    need = ["fold_of", "text/s_mean", "text/s_std"] + [f"{m}/{k}" for m in mods for k in
                                                       ("ref", "ref_rows", "real_dist", "s_mean", "s_std", "coef",
                                                        "scale")]
    missing = [k for k in need if k not in tensors]
    if missing:
        raise CheckpointError(f"{root / WEIGHTS}: missing tensor {missing[0]!r}")
    info = {k: v for k, v in cfg.items() if k not in ("format", "version", "params", "modalities")}
    return QualityScorer(ScorerParams(**cfg["params"]), mods, tensors, info)


def fit_scorer(train: SplitData, params: ScorerParams, modalities: list[str], seed: int = 0) -> QualityScorer:
    """Fit q_fid (kNN reference + leave-one-out calibration) and q_con (cross-fitted ridge, out-of-fold MAE as the
    scale) for ``modalities`` on the TRAINING split ``train`` only."""
    n = len(train)
    if n < 3:
        raise DataError(f"training split: the quality scorer needs at least 3 rows, got {n}")
    t: dict[str, Tensor] = {}
    fold_of = group_folds(list(train.ids), params.folds, seed)
    n_folds = int(fold_of.max()) + 1
    t["fold_of"] = fold_of
    ts_raw = summary_vector(train.features["text"], train.lengths["text"]).double()
    t_mean, t_std = _column_stats(ts_raw.unsqueeze(1), torch.ones(n, dtype=torch.long))
    t["text/s_mean"], t["text/s_std"] = t_mean, t_std
    ts = (ts_raw - t_mean) / t_std
    y = train.labels.double()
    alphas: dict[str, dict[str, float]] = {}
    for m in modalities:
        rows = (train.lengths[m] > 0).nonzero().flatten()
        if len(rows) < 3:
            raise DataError(f"training split: modality {m!r} has {len(rows)} non-missing rows; the scorer needs 3")
        s_raw = summary_vector(train.features[m][rows], train.lengths[m][rows]).double()
        s_mean, s_std = _column_stats(s_raw.unsqueeze(1), torch.ones(len(rows), dtype=torch.long))
        s = (s_raw - s_mean) / s_std
        t[f"{m}/s_mean"], t[f"{m}/s_std"] = s_mean, s_std
        t[f"{m}/ref"], t[f"{m}/ref_rows"] = s, rows
        own = torch.arange(len(rows))
        t[f"{m}/real_dist"] = knn_distance(s, s, params.k, own).sort().values
        # consistency: ridge on [text, modality] -> y, separate penalties per block, cross-fitted over group
        # folds; penalties by out-of-fold MAE
        x, yy, folds = torch.cat([ts[rows], s], dim=1), y[rows], fold_of[rows]
        n_t = ts.shape[1]
        best: tuple[float, tuple[float, float], Tensor] | None = None
        for a_t in params.alphas:
            for a_m in params.alphas:
                pen = torch.cat([torch.full((n_t,), float(a_t)), torch.full((s.shape[1],), float(a_m))]).double()
                coefs, oof = [], torch.zeros(len(rows), dtype=torch.float64)
                for f in range(n_folds):
                    tr_mask = folds != f
                    if int(tr_mask.sum()) < 2:  # no ridge on < 2 rows: the constant model of the fold's own
                        # training rows (never the held-out labels; 0, the scale's centre, when it has none)
                        centre = yy[tr_mask].mean() if bool(tr_mask.any()) else yy.new_zeros(())
                        w = torch.cat([torch.zeros(x.shape[1], dtype=torch.float64), centre.reshape(1)])
                    else:
                        w = ridge_fit(x[tr_mask], yy[tr_mask], pen)
                    coefs.append(w)
                    oof[~tr_mask] = ridge_predict(x[~tr_mask], w)
                mae = float((oof - yy).abs().mean())
                if best is None or mae < best[0]:
                    best = (mae, (float(a_t), float(a_m)), torch.stack([*coefs, ridge_fit(x, yy, pen)]))
        assert best is not None
        alphas[m] = {"text": best[1][0], m: best[1][1], "oof_mae": round(best[0], 4)}
        t[f"{m}/coef"] = best[2]
        t[f"{m}/scale"] = torch.tensor(max(best[0], 1e-6), dtype=torch.float64)
    info = {"n_train": n, "train_ids_sha256": ids_digest(list(train.ids)), "folds": n_folds, "alpha": alphas,
            "seed": seed}
    return QualityScorer(params, modalities, t, info)
