"""EBMC — Enhance-then-Balance Modality Collaboration (seed 001; METHODS.md §3).

Per sample ``i`` and modality ``m ∈ {text, audio, visual}``:

1. **Semantic disentanglement** (reuses :class:`~accord.models.modules.Decoupling`, CACR's block):
   ``X^_m = Conv1D(X_m)``, shared ``H_m = E_s(X^_m)``, private ``P_m = E_p^m(X^_m)``; soft orthogonality
   ``L_orth = Σ_m mean_i |cos(vec H_m, vec P_m)|`` (loss ``orth``). Orthogonality alone leaves the "shared" space
   unconstrained, so a shared-space term makes it shared across modalities (METHODS.md §3, as MISA's similarity
   loss, Hazarika et al. 2020 Eq. 6): ``L_sim = mean_{(m,n) pairs} CMD(h_m, h_n)`` with ``h_m = mean_t H_m`` the
   pooled shared features (before enhancement), CMD over the samples where both modalities are present (5
   moments, :func:`accord.objectives.decoupling.cmd` with 0/1 row weights, so EBMC stays vectorisable; loss
   ``sim``). Its gradient reaches the shared encoder ``E_s`` and the projections.
2. **Cross-modal enhancement** (strong → weak): ``H'_a = H_a + CA(H_a ← H_t)``, ``H'_v = H_v + CA(H_v ← H_t)``
   with ``CA`` one pre-LN cross-attention transformer layer (query: the weak modality, keys/values: text), residual.
   Paper leaves the enhancement block open; we use Accord's :class:`CrossmodalTransformerLayer` (its residual
   form ``x + Attn(LN x, LN H_t) + FFN`` is the "residual"). If text is missing the attention output is zero and
   ``H'_m = H_m`` plus the FFN residual.
3. Unimodal representation ``z_m = W_m [mean_t H'_m ; mean_t P_m] ∈ R^d`` (masked means) and a unimodal head
   ``y_m = f_m(z_m)``, trained with the task loss (``aux_predictions["unimodal_<m>"]``, ``aux_weights`` =
   ``present[:, m]`` so a missing modality's head is never trained on zeros).
4. **Energy-guided modality coordination**: energy ``E_m^(i)`` = per-sample unimodal loss ``|y_m − y|``
   (regression) or the free energy ``−logsumexp(logits_m)`` (classification). Paper leaves the aggregation
   open; we use the batch energy ``Ē_m = mean_{i: m present} E_m^(i)`` and the ONE-SIDED
   ``L_eq = Σ_m relu(Ē_m − sg(mean_n Ē_n))²`` (sg = stop-gradient; METHODS.md §3;
   :func:`accord.objectives.energy.equilibrium_loss`, loss ``eq``): a modality above the mean energy (a weak one)
   gets the gradient ``2 (Ē_m − mean)``, one below it (a strong one) none, so nothing rewards raising a strong
   modality's loss; no hand-edited gradients. ``eq_form: two_sided`` gives ``Σ_m (Ē_m − mean_n Ē_n)²`` (the
   pre-issue-17 form, which pushes the strong modality's loss UP), kept so the difference can be measured.
5. **Instance-aware modality trust distillation**: a trust network maps ``[z_t ; z_a ; z_v ; present]`` to logits
   ``s^(i) ∈ R^3``; absent modalities are masked out, ``w^(i) = softmax(s^(i))`` over the present ones (absent:
   exactly 0). Teacher ``t^(i) = softmax(−err^(i) / T)`` from the unimodal heads' DETACHED per-sample errors
   (``|y_m − y|``, or cross-entropy for classification), 0 for absent modalities; ``L_trust = KL(t ‖ w)``
   (loss ``trust``). Fusion ``h = Σ_m w_m z_m`` and ``ŷ = g(h)``. Paper leaves the trust network's input open;
   we use the unimodal representations plus the presence flags (one MLP sees all three, so it can compare them).

Loss: ``L = L_task(ŷ) + Σ_m λ_u L_task(y_m) + λ_eq L_eq + λ_trust L_trust + λ_orth L_orth + λ_sim L_sim``
(weights in ``EBMC.default_loss_weights``; the paper does not report them. ``λ_sim = 0.1`` like the other
regularisers rather than MISA's 1.0: MISA's shared features are sigmoid outputs in [0, 1], EBMC's are unbounded,
and CMD's higher moments grow with the scale).

Ablations (``ablation``): ``no_enhance`` (step 2 off), ``no_energy`` (``eq`` is 0), ``no_trust`` (uniform
weights over the present modalities; ``trust`` is 0), ``trust_without_distillation`` (the trust network is learned
only through the task loss; ``trust`` is 0), ``no_sim`` (``sim`` is 0: orthogonality alone, the pre-issue-17
model). Every loss name is always emitted so one ``loss_weights`` serves all ablations.

Diagnostics (per sample): ``trust_<m>`` (``w_m``), ``teacher_<m>`` (``t_m``), ``energy_<m>`` (``E_m``).
"""

from __future__ import annotations

from itertools import combinations
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from accord.core.errors import ConfigError
from accord.core.types import MODALITIES, Batch, ModelOutput
from accord.models.base import AccordModel, ModelParams, register_model, squeeze_head
from accord.models.modules import CrossmodalTransformerLayer, Decoupling, MLPHead, masked_mean
from accord.models.params.ebmc import EBMCDeclaration
from accord.objectives.decoupling import cmd
from accord.objectives.energy import equilibrium_loss, trust_kl_per_sample, trust_teacher

WEAK = ("audio", "visual")
_NEG = -1e9


@register_model("ebmc")
class EBMC(EBMCDeclaration, AccordModel):
    """Enhance-then-Balance Modality Collaboration: decoupling, text→audio/visual enhancement, energy equilibrium,
    trust-weighted fusion distilled from the unimodal heads' errors."""

    # `accord ablate --method ebmc` re-runs the ablation table; seed 001 is an abstract, so no paper numbers.
    ablation_param: ClassVar[str] = "ablation"
    ablation_reference: ClassVar[str] = "seed 001 (EBMC) gives only its abstract: no paper numbers to compare"
    ablation_table: ClassVar[dict[str, dict[str, Any]]] = {
        "full": {"label": "EBMC (full)", "paper": {}},
        "no_enhance": {"label": "w/o cross-modal enhancement", "paper": {}},
        "no_energy": {"label": "w/o L_eq (energy coordination)", "paper": {}},
        "no_trust": {"label": "w/o trust (uniform weights)", "paper": {}},
        "trust_without_distillation": {"label": "trust without distillation", "paper": {}},
        "no_sim": {"label": "w/o shared-space CMD (orthogonality only)", "paper": {}},
    }

    def __init__(self, dims: dict[str, int], out_dim: int, params: ModelParams) -> None:
        super().__init__(dims, out_dim, params)
        p = self.params
        assert isinstance(p, EBMC.Params)
        if p.hidden % p.heads:
            raise ConfigError(f"model.params.heads: {p.heads} must divide hidden={p.hidden}")
        d = p.hidden
        self.decoupling = Decoupling(
            dims, d, kernel_size=p.kernel_size, shared_encoder=p.shared_encoder, temporal=p.encoder_temporal,
            encoder_kernel=p.encoder_kernel, heads=p.heads, dropout=p.dropout,
            downsample={"text": p.downsample_text, "audio": p.downsample_audio, "visual": p.downsample_visual})
        self.enhance = nn.ModuleDict({
            m: CrossmodalTransformerLayer(d, p.heads, relu_dropout=p.dropout, res_dropout=p.dropout) for m in WEAK
        }) if p.ablation != "no_enhance" else None
        self.unimodal_proj = nn.ModuleDict({m: nn.Linear(2 * d, d) for m in MODALITIES})
        self.unimodal_heads = nn.ModuleDict({
            m: MLPHead(d, out_dim, hidden=p.head_hidden, dropout=p.dropout) for m in MODALITIES})
        self.trust_net = MLPHead(len(MODALITIES) * (d + 1), len(MODALITIES), hidden=p.head_hidden,
                                 dropout=p.dropout) if p.ablation != "no_trust" else None
        self.fusion_head = MLPHead(d, out_dim, hidden=p.head_hidden, dropout=p.dropout)

    # --- pieces -------------------------------------------------------------------------------------------------
    def modality_parameters(self) -> dict[str, list[nn.Parameter]]:
        """Parameters specific to each modality (private encoder, projection, head; enhancement for A and V)."""
        out: dict[str, list[nn.Parameter]] = {}
        for m in MODALITIES:
            ps = [*self.decoupling.proj[m].parameters(), *self.decoupling.private[m].parameters(),
                  *self.unimodal_proj[m].parameters(), *self.unimodal_heads[m].parameters()]
            if self.enhance is not None and m in self.enhance:
                ps += list(self.enhance[m].parameters())
            out[m] = ps
        return out

    def shared_similarity(self, pooled: dict[str, Tensor], present: Tensor, sample_weight: Tensor | None = None
                          ) -> Tensor:
        """``L_sim = mean_{(m,n)} CMD(h_m, h_n)`` over the rows where both ``m`` and ``n`` are present (0/1 weights,
        no data-dependent indexing), each row also weighted by its ``sample_weight`` (QASA) in the moments."""
        p = self.params
        assert isinstance(p, EBMC.Params)
        fp = present.to(pooled["text"].dtype)
        idx = {m: k for k, m in enumerate(MODALITIES)}
        both = {(a, b): fp[:, idx[a]] * fp[:, idx[b]] for a, b in combinations(MODALITIES, 2)}
        if sample_weight is not None:  # the sample weight once per row (not once per modality of the pair)
            both = {pair: w * sample_weight.to(fp.dtype) for pair, w in both.items()}
        return cmd(torch.stack([pooled[a] for a, _ in both]), torch.stack([pooled[b] for _, b in both]),
                   p.cmd_moments, weight=torch.stack(list(both.values()))).mean()  # the three pairs at once

    def unimodal(self, batch: Batch) -> tuple[dict[str, Tensor], Tensor, Tensor]:
        """Steps 1-3: ``({m: z_m [B, d]}, L_orth, L_sim)``."""
        dec = self.decoupling(batch.features, batch.mask)
        l_orth = self.decoupling.orthogonality(dec.shared, dec.private, dec.mask, per_sample=True)
        p = self.params
        assert isinstance(p, EBMC.Params)
        l_sim = (self.shared_similarity({m: masked_mean(dec.shared[m], dec.mask[m]) for m in MODALITIES},
                                        batch.present, batch.extras.get("sample_weight"))
                 if p.ablation != "no_sim" else l_orth.sum() * 0.0)
        shared = dict(dec.shared)
        if self.enhance is not None:
            for m in WEAK:
                qmask = dec.mask[m].unsqueeze(-1).to(shared[m].dtype)
                shared[m] = self.enhance[m](shared[m], dec.mask[m], source=dec.shared["text"],
                                            source_mask=dec.mask["text"]) * qmask
        z = {m: self.unimodal_proj[m](torch.cat([masked_mean(shared[m], dec.mask[m]),
                                                 masked_mean(dec.private[m], dec.mask[m])], dim=-1))
             for m in MODALITIES}
        return z, l_orth, l_sim

    def trust_logits(self, z: dict[str, Tensor], present: Tensor) -> Tensor:
        """Trust logits ``s [B, 3]`` with absent modalities masked to a large negative value."""
        pres = present.bool()
        if self.trust_net is None:  # no_trust: uniform over the present modalities
            s = torch.zeros(pres.shape, dtype=z["text"].dtype, device=pres.device)
        else:
            inp = torch.cat([*(z[m] for m in MODALITIES), pres.to(z["text"].dtype)], dim=-1)
            s = self.trust_net(inp)
        return s.masked_fill(~pres, _NEG)

    def errors_and_energies(self, preds: dict[str, Tensor], label: Tensor) -> tuple[Tensor, Tensor]:
        """From the unimodal predictions (``[B]`` scores or ``[B, C]`` logits), per-sample ``(err, E)``, both
        ``[B, 3]``: ``|y_m − y|`` for both (regression), or cross-entropy and the free energy
        ``−logsumexp(logits_m)`` (classification)."""
        if self.out_dim == 1:
            err = torch.stack([(preds[m] - label.to(preds[m].dtype)).abs() for m in MODALITIES], dim=1)
            return err, err
        err = torch.stack([F.cross_entropy(preds[m], label.long(), reduction="none") for m in MODALITIES], dim=1)
        energy = torch.stack([-torch.logsumexp(preds[m], dim=-1) for m in MODALITIES], dim=1)
        return err, energy

    # --- forward ------------------------------------------------------------------------------------------------
    def forward(self, batch: Batch) -> ModelOutput:
        p = self.params
        assert isinstance(p, EBMC.Params)
        present = batch.present.bool()
        fp = present.to(batch.features["text"].dtype)
        z, l_orth, l_sim = self.unimodal(batch)
        preds = {m: squeeze_head(self.unimodal_heads[m](z[m]), self.out_dim) for m in MODALITIES}
        err, energy = self.errors_and_energies(preds, batch.label)

        # Step 4: batch energy per modality over the samples where it is present (weighted by QASA's sample
        # weights when the batch has them), then L_eq.
        sw = batch.extras.get("sample_weight")
        wp = fp if sw is None else fp * sw.to(fp.dtype).unsqueeze(1)
        counts = wp.sum(dim=0)
        e_bar = (energy * wp).sum(dim=0) / counts.clamp_min(1e-12)
        zero = energy.sum() * 0.0
        l_eq = equilibrium_loss(e_bar, counts > 0, p.eq_form) if p.ablation != "no_energy" else zero

        # Step 5: trust w, its teacher t and L_trust; fusion h = sum_m w_m z_m.
        s = self.trust_logits(z, present)
        log_w = s.log_softmax(dim=-1)
        w = log_w.exp() * fp
        teacher = trust_teacher(err.detach(), p.temperature, present)
        distil = p.ablation not in ("no_trust", "trust_without_distillation")
        l_trust = trust_kl_per_sample(teacher, log_w, present)[0] if distil else zero
        fused = (w.unsqueeze(-1) * torch.stack([z[m] for m in MODALITIES], dim=1)).sum(dim=1)
        y = self.fusion_head(fused)

        diagnostics: dict[str, Tensor] = {}
        for k, m in enumerate(MODALITIES):
            diagnostics[f"trust_{m}"] = w[:, k].detach()
            diagnostics[f"teacher_{m}"] = teacher[:, k].detach()
            diagnostics[f"energy_{m}"] = energy[:, k].detach()
        return ModelOutput(
            prediction=squeeze_head(y, self.out_dim),
            aux_predictions={f"unimodal_{m}": preds[m] for m in MODALITIES},
            aux_weights={f"unimodal_{m}": fp[:, k] for k, m in enumerate(MODALITIES)},
            losses={"eq": l_eq, "trust": l_trust, "orth": l_orth, "sim": l_sim},
            diagnostics=diagnostics,
            features=z,
        )
