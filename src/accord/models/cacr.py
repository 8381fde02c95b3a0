"""CACR: Conflict-Aware Adaptive Cross-Reconstruction (CVPR 2026; seed 003; METHODS.md §1).

Pipeline (the paper's five steps; equations as numbered in METHODS.md §1):

1. **Decoupling** (§1.1; :class:`~accord.models.modules.Decoupling`): temporal 1-D conv projection of each
   modality to ``d`` (``X_m``), then two encoders per modality, shared ``E_s^m`` and private ``E_p^m``, give
   ``H_m`` and ``P_m`` ``[B, T_m, d]`` (``shared_encoder: common``: one ``E_s`` for every modality, as MISA);
   soft orthogonality ``L_o = sum_m |cos(H_m, P_m)|`` (loss ``orth``).
2. **Conflict-aware weighting, CAW** (§1.2; :mod:`accord.objectives.conflict`): ``h_m`` = masked temporal mean of
   ``H_m``; ``C_m = mean_{n != m} (1 - cos(h_m, h_n))``; ``w_m = w_min + (1 - w_min) exp(-C_m / tau)`` computed
   from the DETACHED conflict; normalised per sample ``w^_m = w_m / sum_n w_n * |M|``.
3. **Cross-reconstruction, CRM** (§1.3; :class:`CrossReconstruction`): for target ``m`` and each ``n != m``,
   ``X~_nm = D_nm([H_n (+) P_m])`` (``H_n`` first resampled to ``m``'s length, channel concatenation, a two-layer
   1-D conv decoder), ``X~_m = F_m([X~_nm]_n)`` (``F_m`` linear on the channel concatenation of the ``X~_nm``).
   ``l_m = ||X~_m - X_m||_2`` per sample and ``L_rec = mean_i sum_m w^_m l_m`` (loss ``rec``). ``X~_m`` is
   re-decoupled with the SAME encoders into ``H~_m, P~_m``; ``L_p = sum_m ||P~_m - P_m||^2`` (loss
   ``preserve``). By construction ``X~_m`` never reads ``H_m`` (only the other modalities' shared features and
   its own private ones).

   **The shortcut and ``crm``** (METHODS.md §1.3). ``P_m = E_p(X_m)`` can carry all of ``X_m``, so with the
   literal decoder input (``crm: paper``) the decoders learn to rebuild ``X_m`` from ``P_m`` alone: on a trained
   model ``l_m`` is the same with ``H_n`` intact or permuted across the batch (``accord probe``: ``hn_rise`` ~0),
   and ``L_rec``/CAW never shape the shared space. The default ``crm: drop`` closes it without a similarity
   loss: in training each sample's ``P_m`` is zeroed in the decoder input with probability ``private_drop``
   (0.5; kept ones scaled by ``1/(1-p)``), so on those samples ``X~_m`` must come from the ``H_n``; evaluation reads
   ``P_m`` unchanged. ``crm: narrow`` (``P_m`` through a ``private_width``-channel linear map) was also tried and
   did not close it. Chosen by measurement (validation MAE and the probe; benchmarks/results/cacr_conflictbench.md).
4. **Fine-grained sentiment refinement, FSR** (§1.4; :class:`SentimentRefinement`): residual conv extractors give
   ``P'_A, P'_V``; ``P'_L = P_L + CrossAttn(query = P_L, key/value = [P'_A; P'_V])``: language is the only query.
5. **Hierarchical fusion** (§1.5): a multimodal transformer (self-attention over the time-concatenation
   ``[P'_L; P'_V; P'_A]``, per-modality positions and modality embeddings) gives ``TP'_m``; a self-attention
   transformer over ``H~ = [H~_L; H~_V; H~_A]`` gives ``TH~``;
   ``M = Cat(pool(TP'_L), pool(TP'_V), pool(TP'_A), pool(TH~))`` -> regressor (the prediction); auxiliary
   regressors on ``pool(TH~)`` (aux prediction ``shared``) and on ``Cat(pool(TP'_m))`` (``private``).
6. **Loss** (§1.6): ``L = L1(y) + a L1(y_shared) + b L1(y_private) + l_rec L_rec + l_o L_o + l_p L_p``. The
   trainer applies the task loss (L1 for regression) to the prediction and both aux predictions and weights every
   term by ``loss_weights`` (defaults: :attr:`CACR.default_loss_weights`, overridable with ``loss_weights.<name>``).
   ``rec``, ``orth`` and ``preserve`` are returned per sample ``[B]`` (``L_rec(i) = sum_m w^_m l_m``,
   ``L_o(i) = sum_m |cos(H_m, P_m)|`` and ``L_p(i) = sum_m ||P~_m - P_m||^2`` over the modalities present in
   ``i``); the trainer takes their mean over the batch, weighted by the samples' ``sample_weight`` (QASA). With
   every modality present the means equal the paper's batch forms; with a missing one, ``orth`` and ``preserve``
   divide each modality's sum by the batch size rather than by its count of present samples.

Ablations of seed 003's table (``ablation`` parameter, one config switch each): ``full``; ``no_crm`` (no
cross-reconstruction: the shared branch reads ``H`` from plain decoupling; no ``rec``, no ``preserve``, since
there is no ``P~``); ``no_caw`` (``w = 1``); ``gating`` (``w_m = w_min + (1 - w_min) sigmoid(g_m(h_m))``, a
learned gate instead of the conflict score); ``no_fsr`` (``P' = P``); ``no_orth`` (no ``L_o``);
``no_private`` (no ``L_p``, the paper's "w/o L_p"). A removed loss is still returned, as a constant 0 without
gradient, so the same ``loss_weights`` are valid for every ablation.

Choices the paper leaves open (METHODS.md fixes some; the rest are ours):

- paper leaves the reconstruction target open (raw vs projected); METHODS.md fixes the projected sequence
  ``X_m``, and we stop its gradient in ``L_rec`` (``detach_target``), so the loss cannot be lowered by shrinking
  the projection towards zero;
- paper leaves the decay's exact form open; we use ``w_min + (1 - w_min) exp(-C / tau)`` (``w`` in
  ``[w_min, 1]``), with ``omega_min = 0.1``, ``tau = 0.5`` by default (``C`` lies in ``[0, 2]``);
- paper leaves the gate of the "gating" ablation open; we use one ``Linear(d, 1)`` per modality on the detached
  ``h_m``, not detached from the loss it scales (it is learned by the reconstruction loss; the per-sample
  normalisation keeps it from switching all reconstruction off, it can only move weight between modalities);
- paper leaves the temporal alignment of different lengths open; we resample ``H_n`` to ``m``'s valid length
  per sample by linear interpolation (:func:`~accord.models.modules.masked_resample`);
- paper leaves the normalisation of ``l_m`` and ``L_p`` over time open; see :mod:`accord.objectives.decoupling`;
- paper leaves missing modalities open; see :mod:`accord.objectives.conflict` (absent modalities get no
  conflict partner role and zero reconstruction weight);
- CPU setting: ``d = 32``, 2 transformer layers, and audio/visual projected sequences averaged over windows of
  4 steps (``downsample_*``, as our MulT), so MOSI's 375/500-step sequences cost what MulT's do.

With T = 1 (MOSI-U utterance vectors) every sequence operation degenerates to a per-vector one: the convolutions
see one step, resampling is the identity, attention has one key per modality. That is expected.

Not in the paper, off by default: ``shared_anchor``. Nothing in CACR's objective ties the GEOMETRY of
different modalities' shared features together: with one decoder ``D_nm`` per pair, any modality-specific rotation
of ``H_n`` is absorbed by the decoder, so ``cos(h_m, h_n)`` need not reflect sentiment agreement (on ConflictBench
the faithful conflict score is near chance, see benchmarks/results/cacr_conflictbench.md). ``shared_anchor``
adds one regressor, shared by all modalities, on each pooled ``h_m`` (aux predictions ``anchor_<m>``, weighted
by presence), so every modality must express sentiment along the same readout directions of the shared space.
It is an experiment to test that explanation, not part of CACR.

Diagnostics (per sample, saved at evaluation): ``conflict_<m>`` = ``C_m``; ``omega_<m>`` = the UNNORMALISED
weight ``w_m`` in ``[w_min, 1]`` (1 under ``no_caw`` and ``no_crm``, the gate under ``gating``);
``rec_error_<m>`` = ``l_m`` (with CRM). ``features[m]`` = ``pool(TP'_m)``, modality ``m``'s private-branch input
to the fused head.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal, cast

import torch
from torch import Tensor, nn

from accord.core.errors import ConfigError
from accord.core.types import MODALITIES, Batch, ModelOutput
from accord.models.base import AccordModel, ModelParams, register_model, squeeze_head
from accord.models.modules import (
    GELU,
    CrossmodalTransformer,
    Decoupling,
    Dropout,
    MLPHead,
    MultiheadAttention,
    TemporalConv1d,
    masked_mean,
    masked_resample,
    shared_positions,
)
from accord.models.params.cacr import CACRDeclaration, CRMForm
from accord.objectives.conflict import (
    conflict_scores,
    conflict_weights,
    normalize_weights,
    weighted_reconstruction_per_sample,
)
from accord.objectives.decoupling import private_preservation, reconstruction_error

FUSION_ORDER: tuple[str, str, str] = ("text", "visual", "audio")
"""The paper's concatenation order ``[L; V; A]`` for both fusion transformers."""


class CrossReconstruction(nn.Module):
    """CRM (METHODS.md §1.3): ``X~_nm = D_nm([H_n (+) P_m])``, ``X~_m = F_m(Cat_n X~_nm)``.

    ``D_nm`` is ``Conv1d(2d -> d) -> GELU -> Conv1d(d -> d)`` over time ("same" padding, masked); ``F_m`` is
    ``Linear((|M| - 1) d -> d)``. ``H_n`` is resampled to the target's valid length before the concatenation.
    """

    def __init__(self, dim: int, kernel_size: int = 3, modalities: tuple[str, ...] = MODALITIES,
                 sharing: Literal["pair", "target"] = "pair", form: CRMForm = "paper", private_width: int = 4,
                 private_drop: float = 0.5) -> None:
        super().__init__()
        self.modalities, self.sharing, self.form, self.private_drop = modalities, sharing, form, private_drop
        keys = ([f"{n}_to_{m}" for m in modalities for n in modalities if n != m] if sharing == "pair"
                else [f"to_{m}" for m in modalities])
        width = private_width if form == "narrow" else dim
        self.narrow = (nn.ModuleDict({m: nn.Linear(dim, private_width) for m in modalities}) if form == "narrow"
                       else None)
        self.decoders = nn.ModuleDict({
            k: nn.ModuleList([TemporalConv1d(dim + width, dim, kernel_size), TemporalConv1d(dim, dim, kernel_size)])
            for k in keys
        })
        self.act = GELU()
        self.fuse = nn.ModuleDict({m: nn.Linear((len(modalities) - 1) * dim, dim) for m in modalities})

    def private_input(self, modality: str, private: Tensor) -> Tensor:
        """What of ``P_m`` the decoders read: all of it (``paper``), a ``private_width``-channel linear projection
        (``narrow``), or all of it with each sample's ``P_m`` zeroed with probability ``private_drop`` in training
        (``drop``; scaled by ``1 / (1 - p)`` like dropout, so evaluation reads ``P_m`` unchanged)."""
        if self.narrow is not None:
            return cast(nn.Linear, self.narrow[modality])(private)
        if self.form == "drop" and self.training and self.private_drop > 0:
            keep = torch.rand(private.shape[0], 1, 1, device=private.device) >= self.private_drop
            return private * keep.to(private.dtype) / (1.0 - self.private_drop)
        return private

    def decode(self, source: str, target: str, shared_source: Tensor, source_mask: Tensor, private_target: Tensor,
               target_mask: Tensor) -> Tensor:
        """``X~_nm = D_nm([resample(H_n) (+) P_m])`` ``[B, T_m, d]``."""
        h = masked_resample(shared_source, source_mask, target_mask)
        key = f"{source}_to_{target}" if self.sharing == "pair" else f"to_{target}"
        conv1, conv2 = cast(nn.ModuleList, self.decoders[key])  # a ModuleDict item is typed as Module
        return conv2(self.act(conv1(torch.cat([h, private_target], dim=-1), target_mask)), target_mask)

    def forward(self, shared: dict[str, Tensor], private: dict[str, Tensor],
                mask: dict[str, Tensor], shared_mask: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        """Target modality -> ``X~_m [B, T_m, d]`` (zero at padding); never reads ``shared[m]`` for target m.
        ``shared_mask`` (default ``mask``) is the validity mask of ``shared`` when it differs from the targets'
        (the H_n-dependence probe permutes ``shared`` across the batch)."""
        smask = mask if shared_mask is None else shared_mask
        out: dict[str, Tensor] = {}
        for m in self.modalities:
            pm = self.private_input(m, private[m])
            parts = [self.decode(n, m, shared[n], smask[n], pm, mask[m]) for n in self.modalities if n != m]
            out[m] = self.fuse[m](torch.cat(parts, dim=-1)) * mask[m].unsqueeze(-1).to(parts[0].dtype)
        return out


class SentimentRefinement(nn.Module):
    """FSR (METHODS.md §1.4): ``P'_m = P_m + Drop(GELU(Conv(P_m)))`` for audio and visual, then
    ``P'_L = P_L + Drop(Attn(LN(P_L), LN([P'_A; P'_V])))`` (language is the only query; the attention keys are
    the time-concatenation of the refined audio and visual private sequences, padding masked)."""

    def __init__(self, dim: int, heads: int, kernel_size: int = 3, dropout: float = 0.1,
                 attn_dropout: float = 0.0) -> None:
        super().__init__()
        self.extract = nn.ModuleDict({m: TemporalConv1d(dim, dim, kernel_size) for m in ("audio", "visual")})
        self.act = GELU()
        self.drop = Dropout(dropout)
        self.ln_q = nn.LayerNorm(dim)
        self.ln_kv = nn.LayerNorm(dim)
        self.attn = MultiheadAttention(dim, heads, dropout=attn_dropout)

    def forward(self, private: dict[str, Tensor], mask: dict[str, Tensor]) -> dict[str, Tensor]:
        out = dict(private)
        for m in ("audio", "visual"):
            p = private[m]
            out[m] = (p + self.drop(self.act(self.extract[m](p, mask[m])))) * mask[m].unsqueeze(-1).to(p.dtype)
        kv = torch.cat([out["audio"], out["visual"]], dim=1)
        kv_mask = torch.cat([mask["audio"], mask["visual"]], dim=1)
        text = private["text"]
        attended = self.attn(self.ln_q(text), self.ln_kv(kv), kv_mask)[0]
        out["text"] = (text + self.drop(attended)) * mask["text"].unsqueeze(-1).to(text.dtype)
        return out


class ConcatTransformer(nn.Module):
    """Self-attention transformer over the time-concatenation of several modality sequences.

    Each segment is scaled by ``sqrt(d)`` (as MulT), gets sinusoidal positions counted within the segment and a
    learned modality embedding, so the result does not depend on how much padding any segment carries. Returns
    the per-segment outputs ``[B, T_k, d]`` (zero at padding).
    """

    def __init__(self, dim: int, heads: int, layers: int, segments: int, dropout: float = 0.1,
                 attn_dropout: float = 0.0) -> None:
        super().__init__()
        self.scale = math.sqrt(dim)
        self.modality_embedding = nn.Parameter(torch.randn(segments, dim) * 0.02)
        self.transformer = CrossmodalTransformer(dim, heads, layers, attn_dropout=attn_dropout, relu_dropout=dropout,
                                                 res_dropout=dropout, embed_dropout=dropout, positions=False,
                                                 scale_embedding=False, self_attention=True)

    def forward(self, seqs: list[Tensor], masks: list[Tensor]) -> list[Tensor]:
        parts = []
        for k, (x, m) in enumerate(zip(seqs, masks, strict=True)):
            pos = shared_positions(x.shape[1], x.shape[2], device=x.device, dtype=x.dtype).unsqueeze(0)
            parts.append((self.scale * x + pos + self.modality_embedding[k]) * m.unsqueeze(-1).to(x.dtype))
        out = self.transformer(torch.cat(parts, dim=1), torch.cat(masks, dim=1))
        return list(out.split([x.shape[1] for x in seqs], dim=1))


@register_model("cacr")
class CACR(CACRDeclaration, AccordModel):
    """Conflict-Aware Adaptive Cross-Reconstruction (seed 003): decoupling, CAW, CRM, FSR, hierarchical fusion."""

    ablation_param: ClassVar[str] = "ablation"
    ablation_reference: ClassVar[str] = "seed 003 (CACR, CVPR 2026), ablation table on CMU-MOSI (BERT features)"
    ablation_table: ClassVar[dict[str, dict[str, Any]]] = {
        "full": {"label": "CACR (Full)", "paper": {"Mult_acc_7": 48.69, "Non0_acc_2": 87.04, "MAE": 0.710}},
        "no_crm": {"label": "w/o CRM", "paper": {"Mult_acc_7": 40.23, "Non0_acc_2": 84.15, "MAE": 0.791}},
        "no_caw": {"label": "w/o CAW", "paper": {"Mult_acc_7": 44.31, "Non0_acc_2": 83.84, "MAE": 0.752}},
        "gating": {"label": "gating", "paper": {"Mult_acc_7": 44.98, "Non0_acc_2": 84.91, "MAE": 0.747}},
        "no_fsr": {"label": "w/o FSR", "paper": {"Mult_acc_7": 46.79, "Non0_acc_2": 86.43, "MAE": 0.751}},
        "no_orth": {"label": "w/o L_o", "paper": {"Mult_acc_7": 40.96, "Non0_acc_2": 85.06, "MAE": 0.779}},
        "no_private": {"label": "w/o L_p", "paper": {"Mult_acc_7": 42.53, "Non0_acc_2": 84.76, "MAE": 0.788}},
    }
    """Rows of seed 003's ablation table in the paper's order, with its MOSI numbers (ACC7, ACC2, MAE; the paper
    gives one ACC2 column, compared here with our ``Non0_acc_2``), read by ``accord ablate``."""

    def __init__(self, dims: dict[str, int], out_dim: int, params: ModelParams) -> None:
        super().__init__(dims, out_dim, params)
        p = self.params
        assert isinstance(p, CACR.Params)
        if p.hidden % p.heads:
            raise ConfigError(f"model.params.heads: {p.heads} does not divide hidden={p.hidden}")
        for key in ("kernel_size", "encoder_kernel", "decoder_kernel", "fsr_kernel"):
            if getattr(p, key) % 2 == 0:
                raise ConfigError(f"model.params.{key}: must be odd ('same' padding), got {getattr(p, key)}")
        d = p.hidden
        self.use_crm = p.ablation != "no_crm"
        self.use_fsr = p.ablation != "no_fsr"
        self.use_orth = p.ablation != "no_orth"
        self.use_preserve = self.use_crm and p.ablation != "no_private"
        self.weighting: Literal["caw", "none", "gate"] = (
            "none" if p.ablation == "no_caw" else "gate" if p.ablation == "gating" else "caw")
        self.decoupling = Decoupling(
            dims, d, kernel_size=p.kernel_size, shared_encoder=p.shared_encoder, temporal=p.encoder_temporal,
            encoder_kernel=p.encoder_kernel, heads=p.heads, dropout=p.dropout,
            downsample={"text": p.downsample_text, "audio": p.downsample_audio, "visual": p.downsample_visual})
        self.crm = (CrossReconstruction(d, p.decoder_kernel, sharing=p.decoders, form=p.crm,
                                        private_width=p.private_width, private_drop=p.private_drop)
                    if self.use_crm else None)
        self.gate = (nn.ModuleDict({m: nn.Linear(d, 1) for m in MODALITIES})
                     if self.use_crm and self.weighting == "gate" else None)
        self.fsr = SentimentRefinement(d, p.heads, p.fsr_kernel, p.dropout, p.attn_dropout) if self.use_fsr else None
        self.private_fusion = ConcatTransformer(d, p.heads, p.layers, 3, p.dropout, p.attn_dropout)
        self.shared_fusion = ConcatTransformer(d, p.heads, p.layers, 3, p.dropout, p.attn_dropout)
        self.head = MLPHead(4 * d, out_dim, hidden=p.head_hidden, dropout=p.dropout)
        self.shared_head = MLPHead(d, out_dim, hidden=p.head_hidden, dropout=p.dropout)
        self.private_head = MLPHead(3 * d, out_dim, hidden=p.head_hidden, dropout=p.dropout)
        self.anchor_head = MLPHead(d, out_dim, hidden=p.head_hidden, dropout=p.dropout) if p.shared_anchor else None

    # ------------------------------------------------------------------ components
    def reconstruction_weights(self, pooled_shared: Tensor, conflict: Tensor) -> Tensor:
        """Unnormalised weights ``w [B, 3]``: CAW from the detached conflict, 1 (``no_caw``) or the gate."""
        p = self.params
        assert isinstance(p, CACR.Params)
        if self.weighting == "none":
            return torch.ones_like(conflict)
        if self.weighting == "gate":
            assert self.gate is not None
            g = torch.cat([self.gate[m](pooled_shared[:, k].detach()) for k, m in enumerate(MODALITIES)], dim=1)
            return p.omega_min + (1.0 - p.omega_min) * torch.sigmoid(g)
        return conflict_weights(conflict.detach(), p.omega_min, p.tau)

    def cross_reconstruct(self, shared: dict[str, Tensor], private: dict[str, Tensor],
                          mask: dict[str, Tensor]) -> dict[str, Tensor]:
        """``X~_m`` for every target modality (see :class:`CrossReconstruction`)."""
        if self.crm is None:
            raise RuntimeError("this CACR was built with ablation='no_crm'; it has no cross-reconstruction")
        return self.crm(shared, private, mask)

    # ------------------------------------------------------------------ forward
    def forward(self, batch: Batch) -> ModelOutput:
        x, shared, private, mask = self.decoupling(batch.features, batch.mask)
        present = torch.stack([mask[m].any(dim=1) for m in MODALITIES], dim=1)  # [B, 3]
        pooled = torch.stack([masked_mean(shared[m], mask[m]) for m in MODALITIES], dim=1)  # h_m, [B, 3, d]
        conflict = conflict_scores(pooled, present)
        diagnostics: dict[str, Tensor] = {f"conflict_{m}": conflict[:, k].detach() for k, m in enumerate(MODALITIES)}
        losses: dict[str, Tensor] = {}
        shared_for_fusion = shared
        if self.use_crm:
            shared_for_fusion, rec_losses, rec_diagnostics = self._reconstruction_branch(
                x, shared, private, mask, pooled, conflict, present)
            losses.update(rec_losses)
            diagnostics.update(rec_diagnostics)
        else:
            diagnostics.update({f"omega_{m}": torch.ones_like(conflict[:, k]) for k, m in enumerate(MODALITIES)})
        if self.use_orth:
            losses["orth"] = self.decoupling.orthogonality(shared, private, mask, per_sample=True)  # [B]
        zero = pooled.new_zeros(())
        for name in ("rec", "orth", "preserve"):  # a removed loss is a constant 0, so one loss_weights fits all
            losses.setdefault(name, zero)
        refined = self.fsr(private, mask) if self.fsr is not None else private
        return self._fuse(refined, shared_for_fusion, mask, pooled, present, losses, diagnostics)

    def _reconstruction_branch(
        self, x: dict[str, Tensor], shared: dict[str, Tensor], private: dict[str, Tensor], mask: dict[str, Tensor],
        pooled: Tensor, conflict: Tensor, present: Tensor,
    ) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Tensor]]:
        """CAW + CRM: the shared sequences of the re-decoupled reconstructions (the input of the shared fusion),
        the losses ``rec`` (and ``preserve``) and the diagnostics ``omega_<m>`` and ``rec_error_<m>``."""
        p = self.params
        assert isinstance(p, CACR.Params)
        omega = self.reconstruction_weights(pooled, conflict)
        diagnostics = {f"omega_{m}": omega[:, k].detach() for k, m in enumerate(MODALITIES)}
        recon = self.cross_reconstruct(shared, private, mask)
        err = torch.stack([
            reconstruction_error(recon[m], x[m].detach() if p.detach_target else x[m], mask[m])
            for m in MODALITIES], dim=1)  # l_m, [B, 3]
        diagnostics.update({f"rec_error_{m}": err[:, k].detach() for k, m in enumerate(MODALITIES)})
        losses = {"rec": weighted_reconstruction_per_sample(err, normalize_weights(omega, present))}  # [B]
        shared_again, private_again = self.decoupling.decouple(recon, mask)  # same encoders
        if self.use_preserve:
            pres = present.to(err.dtype)
            per = torch.stack([private_preservation(private_again[m], private[m], mask[m])
                               for m in MODALITIES], dim=1)
            losses["preserve"] = (per * pres).sum(dim=1)  # [B]: sum over the present modalities
        return shared_again, losses, diagnostics

    def _fuse(self, refined: dict[str, Tensor], shared: dict[str, Tensor], mask: dict[str, Tensor], pooled: Tensor,
              present: Tensor, losses: dict[str, Tensor], diagnostics: dict[str, Tensor]) -> ModelOutput:
        """Hierarchical fusion of the (refined) private and the shared sequences: the output with the prediction,
        the auxiliary predictions (with the anchors' weights), ``losses``, ``diagnostics`` and the pooled private
        features of each modality."""
        order_masks = [mask[m] for m in FUSION_ORDER]
        tp = self.private_fusion([refined[m] for m in FUSION_ORDER], order_masks)
        private_pooled = {m: masked_mean(t, mask[m]) for m, t in zip(FUSION_ORDER, tp, strict=True)}
        th = self.shared_fusion([shared[m] for m in FUSION_ORDER], order_masks)
        shared_pooled = masked_mean(torch.cat(th, dim=1), torch.cat(order_masks, dim=1))
        private_cat = torch.cat([private_pooled[m] for m in FUSION_ORDER], dim=-1)
        fused = self.head(torch.cat([private_cat, shared_pooled], dim=-1))
        aux = {"shared": squeeze_head(self.shared_head(shared_pooled), self.out_dim),
               "private": squeeze_head(self.private_head(private_cat), self.out_dim)}
        aux_w = {}
        if self.anchor_head is not None:
            for k, m in enumerate(MODALITIES):
                aux[f"anchor_{m}"] = squeeze_head(self.anchor_head(pooled[:, k]), self.out_dim)
                aux_w[f"anchor_{m}"] = present[:, k].to(pooled.dtype)
        return ModelOutput(
            prediction=squeeze_head(fused, self.out_dim),
            aux_predictions=aux, aux_weights=aux_w,
            losses=losses,
            diagnostics=diagnostics,
            features={m: private_pooled[m] for m in MODALITIES},
        )
