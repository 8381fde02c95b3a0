"""CP+SL: Conflict-aware Penalty and Statistical Loss (Dai, Liang and Mai, "A Conflict-Aware Penalty and
Statistical Loss Framework for Balancing Modalities and Enhancing Stability in Multimodal Sentiment Analysis",
arXiv 2605.28575; the project's spec: METHODS.md §2).

The backbone (the paper's "adaptive modality encoding, gated cross-modal fusion, and unimodal auxiliary heads"):

1. Adaptive modality encoding: per modality a :class:`~accord.models.modules.SequenceEncoder` gives ``H_m
   [B, T_m, d]`` and its masked mean ``h_m``; a learned, input-dependent gain ``a_m = 2·σ(w_mᵀ h_m + b_m)``
   (initialised to exactly 1; the paper leaves the gain's form open, we use one scalar per sample in (0, 2))
   scales it: ``Z_m = a_m · H_m``. ``Z_m`` is the modality's representation at the fusion input
   (``features[m]``, ``[B, T_m, d]``), which the gradient monitor and CP differentiate against.
2. Gated cross-modal fusion: text queries audio and visual, ``C_m = Attn(LN(Z_L), LN(Z_m))`` for m ∈ {A, V}
   (masked multi-head attention, :class:`~accord.models.modules.MultiheadAttention`); a sigmoid gate per step
   and channel ``G_m = σ(W_m [Z_L; C_m] + b_m)`` decides how much enters: ``F = Z_L + G_A ⊙ C_A + G_V ⊙ C_V``,
   pooled over the text steps and regressed by an MLP head. (The paper leaves the gate's input open; we use the
   query and the attended value.) Without text the prediction falls back to the head's bias: text is the only
   query, as in the paper.
3. Unimodal auxiliary heads: an MLP per modality on the masked mean of ``Z_m`` (``aux_predictions
   ["unimodal_<m>"]``, L1 each like the task; zero weight where the modality is missing).

The objectives:

* SL (:func:`accord.objectives.statistical.statistical_loss`): the model loss ``sl`` = ``L_SL`` over the batch's
  predictions and labels, unweighted; the trainer multiplies it by ``λ_sl = loss_weights.sl`` (default 0.1). It is
  a statistic over the batch (a scalar): the batch's per-sample weights (``batch.extras["sample_weight"]``, QASA)
  weight its moments, so a row of weight 0 does not enter it; they never scale it (the trainer weights losses).
  Regression only.
* CP (the ``conflict_penalty`` hook, :mod:`accord.balance.cp`): penalty ``Σ_m relu(r_m − κ)²`` on conflict steps,
  weighted by ``λ_cp = loss_weights.cp`` (default 1.0), plus the projection of the dominant modality's task
  gradient off the SL gradient, decided on every step by their cosine (``project_on: always``; ``conflict`` is
  the old, non-paper rule); :meth:`CPSL.required_hooks` names the hook, so the one trainer runs it (no second
  training loop) and the model never imports it.

Ablations (``model.params.ablation``): ``full``; ``no_cp`` (no penalty, no projection); ``no_sl`` (no SL, hence
nothing to project against); ``no_projection`` (CP's penalty without the projection); ``backbone`` (neither).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from accord.core.errors import ConfigError
from accord.core.types import MODALITIES, Batch, ModelOutput
from accord.models.base import AccordModel, ModelParams, register_model, squeeze_head
from accord.models.modules import MLPHead, MultiheadAttention, build_encoder, masked_mean
from accord.models.params.cpsl import CP_ABLATIONS, CPSLDeclaration
from accord.objectives.statistical import statistical_loss

SOURCES = ("audio", "visual")
"""The modalities text queries in the gated cross-modal fusion."""


@register_model("cpsl")
class CPSL(CPSLDeclaration, AccordModel):
    """Adaptive encoding, text-query gated cross-modal fusion, unimodal heads; CP via hook, SL as a model loss."""

    def __init__(self, dims: dict[str, int], out_dim: int, params: ModelParams) -> None:
        super().__init__(dims, out_dim, params)
        p = self.params
        assert isinstance(p, CPSL.Params)
        if p.hidden % p.fusion_heads:
            raise ConfigError(f"model.params.fusion_heads: {p.fusion_heads} does not divide hidden={p.hidden}")
        if out_dim != 1 and self.uses_sl:
            raise ConfigError(f"model.params.ablation: {p.ablation!r} uses the statistical loss, which needs "
                              f"task.kind=regression; use ablation=no_sl or backbone for classification")
        d = p.hidden
        self.encoders = nn.ModuleDict({m: build_encoder(dims[m], p) for m in MODALITIES})
        self.gain = nn.ModuleDict({m: nn.Linear(d, 1) for m in MODALITIES})
        for lin in self.gain.values():  # a_m = 2·σ(0) = 1 at initialisation
            assert isinstance(lin, nn.Linear)
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)
        self.ln_query = nn.LayerNorm(d)
        self.ln_source = nn.ModuleDict({m: nn.LayerNorm(d) for m in SOURCES})
        self.cross = nn.ModuleDict({m: MultiheadAttention(d, p.fusion_heads) for m in SOURCES})
        self.gate = nn.ModuleDict({m: nn.Linear(2 * d, d) for m in SOURCES})
        self.head = MLPHead(d, out_dim, hidden=p.head_hidden, dropout=p.dropout)
        self.unimodal = nn.ModuleDict({
            m: MLPHead(d, out_dim, hidden=p.head_hidden, dropout=p.dropout) for m in MODALITIES
        })

    @property
    def uses_sl(self) -> bool:
        p = self.params
        assert isinstance(p, CPSL.Params)
        return p.ablation in ("full", "no_cp", "no_projection")

    @property
    def uses_cp(self) -> bool:
        p = self.params
        assert isinstance(p, CPSL.Params)
        return p.ablation in CP_ABLATIONS

    def modality_parameters(self) -> dict[str, list[nn.Parameter]]:
        """Encoder, gain and unimodal head of each modality (the fusion is shared; see accord.balance.modality)."""
        return {m: [*self.encoders[m].parameters(), *self.gain[m].parameters(), *self.unimodal[m].parameters()]
                for m in MODALITIES}

    def encode(self, batch: Batch) -> tuple[dict[str, Tensor], Tensor]:
        """Adaptive modality encoding: ``({m: Z_m [B, T_m, d]}, gains [B, 3])``."""
        feats: dict[str, Tensor] = {}
        gains = []
        for m in MODALITIES:
            enc = self.encoders[m](batch.features[m], batch.mask[m])
            a = 2.0 * torch.sigmoid(self.gain[m](enc.pooled))  # [B, 1]
            gains.append(a.squeeze(-1))
            feats[m] = enc.seq * a.unsqueeze(-1)
        return feats, torch.stack(gains, dim=1)

    def fuse(self, feats: dict[str, Tensor], mask: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Gated cross-modal fusion: ``(pooled fused text stream [B, d], mean gate per source [B, 2])``."""
        zl = feats["text"]
        q = self.ln_query(zl)
        fused = zl
        gate_means = []
        for m in SOURCES:
            # explicit-softmax attention: CP's penalty differentiates through it twice, which PyTorch's fused
            # scaled_dot_product_attention kernel does not support on CPU
            c, _ = self.cross[m](q, self.ln_source[m](feats[m]), mask[m], return_weights=True)
            g = torch.sigmoid(self.gate[m](torch.cat([zl, c], dim=-1)))
            fused = fused + g * c
            gate_means.append(masked_mean(g, mask["text"]).mean(dim=-1))
        return masked_mean(fused, mask["text"]), torch.stack(gate_means, dim=1)

    def forward(self, batch: Batch) -> ModelOutput:
        p = self.params
        assert isinstance(p, CPSL.Params)
        feats, gains = self.encode(batch)
        pooled, gates = self.fuse(feats, batch.mask)
        prediction = squeeze_head(self.head(pooled), self.out_dim)
        aux = {f"unimodal_{m}": squeeze_head(self.unimodal[m](masked_mean(feats[m], batch.mask[m])), self.out_dim)
               for m in MODALITIES}
        losses: dict[str, Tensor] = {}
        if self.uses_sl:
            # a statistic over the batch: the sample weights (QASA) weight its moments, they never scale it
            losses["sl"] = statistical_loss(prediction, batch.label, correlation=p.sl_correlation,
                                            weight=batch.extras.get("sample_weight"))
        return ModelOutput(
            prediction=prediction,
            aux_predictions=aux,
            aux_weights={f"unimodal_{m}": batch.present[:, k].float() for k, m in enumerate(MODALITIES)},
            losses=losses,
            diagnostics={"gain": gains.detach(), "gate": gates.detach()},
            features=feats,
        )
