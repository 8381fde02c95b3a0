"""MISA: Modality-Invariant and -Specific Representations (the decoupling baseline CACR argues against).

Hazarika, Zimmermann, Poria, "MISA: Modality-Invariant and -Specific Representations for Multimodal Sentiment
Analysis", ACM MM 2020. MISA assumes the modalities of a sample agree: it aligns the shared (invariant) features
of all modalities with a SIMILARITY loss and rebuilds each modality from its OWN shared + private features
(SELF-reconstruction), exactly the two operations seed 003 (CACR) replaces by conflict-weighted cross-reconstruction.

Pipeline (paper Sec. 3):

1. utterance representation ``u_m`` of each modality, projected to ``d`` (paper Eq. 1-2; MISA uses BERT / sLSTMs);
   here the shared :class:`~accord.models.modules.Decoupling` block's temporal 1-D conv projection ``X_m``;
2. a shared encoder ``E_c`` (one for all modalities) and private encoders ``E_p^m``, each ``Linear + Sigmoid``
   (paper Eq. 3; :class:`Decoupling` with ``temporal="none"``, ``activation="sigmoid"``), applied per step and
   mean-pooled over valid steps to ``h_c^m``, ``h_p^m``;
3. losses (paper Eq. 5-9): ``sim`` = CMD between the pooled shared vectors of each modality pair (5 moments,
   averaged over the 3 pairs); ``diff`` = MISA's soft orthogonality between shared and private of each modality
   plus between the privates of each pair; ``recon`` = MSE of the self-reconstruction
   ``D_m(H_m + P_m)`` of the projected sequence ``X_m`` (averaged over the modalities);

   ``recon`` is per sample ``[B]``: ``L_rec(i) = mean_{m present in i} mean_{t valid, c} (D_m(H_m + P_m) - X_m)^2``,
   which the trainer averages over the batch with the samples' ``sample_weight``; with full-length rows and every
   modality present its mean is the released code's, otherwise each row counts once (not once per valid step)
   and a row's missing modalities are left out of its mean. ``sim`` and ``diff`` are statistics over the batch
   (scalars): the model reads ``batch.extras["sample_weight"]`` only to weight those statistics' rows (weighted
   moments and centring, :mod:`accord.objectives.decoupling`), times modality presence as 0/1 weights, so a row
   of weight 0 (or without the modality) has no influence at all. The weights never scale a loss: the trainer
   does that;
4. fusion (paper Sec. 3.4): a transformer layer (self-attention) over the six vectors
   ``[h_p^t, h_p^v, h_p^a, h_c^t, h_c^v, h_c^a]``, outputs concatenated, then ``Linear(6d, 3d) -> Dropout -> ReLU
   -> Linear(3d, out)``.

Loss weights follow MISA's MOSI setting (``diff_weight 0.3``, ``sim_weight 1.0``, ``recon_weight 1.0``).

Differences from the released code (for CPU and for unaligned sequences): the utterance encoder is a conv
projection + masked mean instead of BERT / bidirectional LSTMs; the encoders run per step before pooling (the
same thing at T = 1, as on MOSI-U); the self-reconstruction targets the projected sequence per valid step; a
pre-LN transformer layer (Accord's) instead of ``nn.TransformerEncoderLayer``; missing modalities are masked
out of the fusion tokens and of the pairwise losses; default ``d = 32`` (MISA: 128). By default the projection is
linear, the shared/private encoders use ``dropout`` and the fusion FFN is ``4d`` wide; ``projection_norm``,
``encoder_dropout``, ``fusion_dropout`` and ``ffn_mult`` give the released code's ReLU + LayerNorm projections, no
encoder dropout, 0.1 dropout in the fusion layer and its 2048-wide FFN (the MMSA comparison sets them).

Diagnostics: ``conflict_<m>``, CACR's conflict score computed in MISA's shared space (never used in training;
for comparing how well each shared space exposes planted conflicts).
"""

from __future__ import annotations

from itertools import combinations
from typing import cast

import torch
from torch import Tensor, nn

from accord.core.errors import ConfigError
from accord.core.types import MODALITIES, Batch, ModelOutput
from accord.models.base import AccordModel, ModelParams, register_model, squeeze_head
from accord.models.modules import (
    CrossmodalTransformer,
    Decoupling,
    Dropout,
    SequenceEncoder,
    masked_mean,
    one_step_encoders,
)
from accord.models.modules.grouped import grouped_layer_norm, grouped_linear
from accord.models.params.misa import MISADeclaration
from accord.objectives.conflict import conflict_scores
from accord.objectives.decoupling import cmd, misa_difference

MISA_ORDER: tuple[str, str, str] = ("text", "visual", "audio")
"""MISA stacks its vectors as (t, v, a), privates first."""


@register_model("misa")
class MISA(MISADeclaration, AccordModel):
    """MISA (Hazarika et al., 2020): shared/private encoders, CMD similarity, difference and self-reconstruction."""

    text_input_form = "pooled"  # an utterance model: a pretrained text branch gives it the sentence vector

    def __init__(self, dims: dict[str, int], out_dim: int, params: ModelParams) -> None:
        super().__init__(dims, out_dim, params)
        p = self.params
        assert isinstance(p, MISA.Params)
        if p.hidden % p.heads:
            raise ConfigError(f"model.params.heads: {p.heads} does not divide hidden={p.hidden}")
        if p.kernel_size % 2 == 0:
            raise ConfigError(f"model.params.kernel_size: must be odd ('same' padding), got {p.kernel_size}")
        d = p.hidden
        self.decoupling = Decoupling(
            dims, d, kernel_size=p.kernel_size, shared_encoder="common", temporal=p.encoder_temporal, heads=p.heads,
            dropout=p.dropout if p.encoder_dropout is None else p.encoder_dropout, activation="sigmoid",
            downsample={"text": p.downsample_text, "audio": p.downsample_audio, "visual": p.downsample_visual})
        self.project_norm = nn.ModuleDict({m: nn.LayerNorm(d) for m in MODALITIES}) if p.projection_norm else None
        self.recon = nn.ModuleDict({m: nn.Linear(d, d) for m in MODALITIES})
        fusion_drop = p.dropout if p.fusion_dropout is None else p.fusion_dropout
        self.fusion = CrossmodalTransformer(d, p.heads, p.layers, attn_dropout=p.fusion_dropout or 0.0,
                                            relu_dropout=fusion_drop, res_dropout=fusion_drop, positions=False,
                                            scale_embedding=False, self_attention=True, ffn_mult=p.ffn_mult)
        self.head = nn.Sequential(nn.Linear(6 * d, 3 * d), Dropout(p.dropout), nn.ReLU(),
                                  nn.Linear(3 * d, out_dim))

    def similarity_and_difference(self, hc: dict[str, Tensor], hp: dict[str, Tensor], present: dict[str, Tensor],
                                  sample_weight: Tensor | None) -> tuple[Tensor, Tensor]:
        """MISA Eq. 6-7 on the pooled shared ``hc`` and private ``hp`` vectors: ``sim`` = mean over the modality
        pairs of CMD(h_c^a, h_c^b); ``diff`` = Σ_m DiffLoss(h_p^m, h_c^m) + Σ_pairs DiffLoss(h_p^a, h_p^b). Both are
        batch statistics whose rows are weighted by presence (0/1) times the sample weight (QASA) when there is one."""
        p = self.params
        assert isinstance(p, MISA.Params)
        ref = hc["text"]
        rows = {m: present[m].to(ref.dtype) * (1.0 if sample_weight is None else sample_weight.to(ref.dtype))
                for m in MODALITIES}
        pairs = list(combinations(MODALITIES, 2))
        both = [rows[a] * present[b].to(ref.dtype) for a, b in pairs]
        # every pair at once ([pairs, B, d]): the CMD of the three shared pairs, the difference of the three
        # private/shared pairs and of the three private pairs
        sim = cmd(torch.stack([hc[a] for a, _ in pairs]), torch.stack([hc[b] for _, b in pairs]), p.cmd_moments,
                  weight=torch.stack(both)).mean()
        diff = misa_difference(torch.stack([hp[m] for m in MODALITIES] + [hp[a] for a, _ in pairs]),
                               torch.stack([hc[m] for m in MODALITIES] + [hp[b] for _, b in pairs]),
                               weight=torch.stack([rows[m] for m in MODALITIES] + both)).sum()
        return sim, diff

    def reconstruction_error(self, x: dict[str, Tensor], shared: dict[str, Tensor], private: dict[str, Tensor],
                             mask: dict[str, Tensor], present: dict[str, Tensor]) -> Tensor:
        """MISA Eq. 8 per sample ``[B]``: each modality rebuilt from ``H_c + H_p``, the mean squared error over its
        valid steps and d channels, averaged over the modalities present."""
        errors = []
        for m in MODALITIES:
            rec = self.recon[m](shared[m] + private[m])
            w = mask[m].unsqueeze(-1).to(rec.dtype)
            errors.append(((rec - x[m]) * w).pow(2).flatten(1).sum(dim=1)
                          / (w.flatten(1).sum(dim=1) * rec.shape[-1]).clamp_min(1.0))
        n_present = torch.stack([present[m] for m in MODALITIES], dim=1).to(errors[0].dtype).sum(dim=1)
        return torch.stack(errors, dim=1).sum(dim=1) / n_present.clamp_min(1.0)

    def utterances(self, batch: Batch) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Tensor],
                                                 dict[str, Tensor]]:
        """Steps 1-2: the projected sequences ``X_m`` (with ``projection_norm``: ``LayerNorm(ReLU(X_m))``, the
        released code's ``project_m``, zero at padding), the shared and private sequences and the masks."""
        if self.project_norm is None:
            out = self.decoupling(batch.features, batch.mask)
            return out.projected, out.shared, out.private, out.mask
        x, mask = self.decoupling.project(batch.features, batch.mask)
        x = {m: self.project_norm[m](torch.relu(x[m])) * mask[m].unsqueeze(-1).to(x[m].dtype) for m in x}
        shared, private = self.decoupling.decouple(x, mask)
        return x, shared, private, mask

    def one_step_utterances(self, batch: Batch) -> tuple[Tensor, Tensor, Tensor, Tensor] | None:
        """:meth:`utterances` when every modality has one step (utterance-level data) and ``batch_modalities``:
        ``(X, H, P [3, B, d], keep [3, B])`` (modalities in :data:`MODALITIES` order; ``keep``: the step is valid),
        or None (the per-modality path then runs).

        Each modality is projected by its own layer; then the projection norms (one normalisation, each norm's
        affine), the shared encoder (one pass over the three modalities' ``3 B`` rows), the private encoders
        (:func:`~accord.models.modules.encoders.one_step_encoders`) and the output activation run once for the
        three. The same function as the per-modality path (equal without dropout, to float rounding); one dropout
        draw covers the three modalities at each site."""
        p = self.params
        assert isinstance(p, MISA.Params)
        dec = self.decoupling
        shared_enc = dec.shared_common
        if (not p.batch_modalities or shared_enc is None or p.encoder_temporal == "transformer"
                or any(batch.features[m].shape[1] != 1 for m in MODALITIES)):
            return None
        projected, _ = dec.project(batch.features, batch.mask)  # one step stays one step (window of one)
        keep = torch.stack([batch.mask[m][:, 0] for m in MODALITIES])
        w = keep.to(projected["text"].dtype).unsqueeze(-1)
        x = torch.stack([projected[m][:, 0] for m in MODALITIES])
        if self.project_norm is not None:
            x = grouped_layer_norm(torch.relu(x), [cast(nn.LayerNorm, self.project_norm[m]) for m in MODALITIES]) * w
        g, b, d = x.shape
        shared = shared_enc.one_step(x.reshape(g * b, 1, d), keep.reshape(g * b, 1), w.reshape(g * b, 1, 1))
        private = one_step_encoders([cast(SequenceEncoder, dec.private[m]) for m in MODALITIES],
                                    list(x.unsqueeze(2).unbind(0)))
        assert private is not None  # the private encoders are built alike
        return x, dec.activate(shared.seq.view(g, b, d), keep), dec.activate(private, keep), keep

    def one_step_reconstruction_error(self, x: Tensor, shared: Tensor, private: Tensor, keep: Tensor) -> Tensor:
        """:meth:`reconstruction_error` on :meth:`one_step_utterances`'s ``[3, B, d]`` tensors: the three
        reconstructions as one batched product, the errors as one ``[3, B]`` computation."""
        rec = grouped_linear(shared + private, [cast(nn.Linear, self.recon[m]) for m in MODALITIES])
        w = keep.to(rec.dtype)
        errors = ((rec - x) * w.unsqueeze(-1)).pow(2).sum(dim=-1) / (w * rec.shape[-1]).clamp_min(1.0)
        return errors.sum(dim=0) / w.sum(dim=0).clamp_min(1.0)

    def forward(self, batch: Batch) -> ModelOutput:
        one_step = self.one_step_utterances(batch)
        if one_step is None:
            x, shared, private, mask = self.utterances(batch)
            present = {m: mask[m].any(dim=1) for m in MODALITIES}
            hc = {m: masked_mean(shared[m], mask[m]) for m in MODALITIES}
            hp = {m: masked_mean(private[m], mask[m]) for m in MODALITIES}
            recon = self.reconstruction_error(x, shared, private, mask, present)
        else:  # one step: the pooled vectors are the (masked) steps themselves
            x_s, shared_s, private_s, keep = one_step
            present = dict(zip(MODALITIES, keep.unbind(0), strict=True))
            hc = dict(zip(MODALITIES, shared_s.unbind(0), strict=True))
            hp = dict(zip(MODALITIES, private_s.unbind(0), strict=True))
            recon = self.one_step_reconstruction_error(x_s, shared_s, private_s, keep)

        sim, diff = self.similarity_and_difference(hc, hp, present, batch.extras.get("sample_weight"))

        tokens = torch.stack([hp[m] for m in MISA_ORDER] + [hc[m] for m in MISA_ORDER], dim=1)  # [B, 6, d]
        token_mask = torch.stack([present[m] for m in MISA_ORDER] * 2, dim=1)
        fused = self.fusion(tokens, token_mask)  # zero at absent tokens
        out = self.head(fused.flatten(1))
        pooled = torch.stack([hc[m] for m in MODALITIES], dim=1)
        conflict = conflict_scores(pooled.detach(), torch.stack([present[m] for m in MODALITIES], dim=1))
        k = {m: i for i, m in enumerate(MISA_ORDER)}
        return ModelOutput(
            prediction=squeeze_head(out, self.out_dim),
            losses={"sim": sim, "diff": diff, "recon": recon},
            diagnostics={f"conflict_{m}": conflict[:, i] for i, m in enumerate(MODALITIES)},
            features={m: torch.cat([fused[:, k[m]], fused[:, 3 + k[m]]], dim=-1) for m in MODALITIES},
        )
