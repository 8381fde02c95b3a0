"""The reusable decoupling block: per-modality sequences -> shared ``H_m`` and private ``P_m`` (B x T x d).

Decoupled representation learning (MISA, FDMER, DMD, DLF, CACR, EBMC) splits each modality into a *shared*
subspace, meant to hold what the modalities have in common, and a *private* subspace for what is specific to one
modality. This block implements CACR's version (METHODS.md §1.1; seed 003, "Overall Architecture", step 1):

1. a per-modality temporal 1-D convolution projects ``X_m [B, T_m, D_m]`` to ``d`` channels (``X^_m``, the
   "projected sequence", which CACR's cross-reconstruction targets); optionally the projected sequence is averaged
   over non-overlapping windows (``downsample``, as MulT's CPU setting) to shorten long audio/visual sequences;
2. a shared encoder ``E_s`` and a private encoder ``E_p^m`` map ``X^_m`` to ``H_m = E_s(X^_m)`` and
   ``P_m = E_p^m(X^_m)``. The block's default is ONE shared encoder for every modality (``shared_encoder="common"``,
   as in MISA and DLF: the shared subspace is literally the same map); ``"separate"`` gives each modality its own
   ``E_s^m``, which is CACR's default (METHODS.md §1.1 "per modality, two encoders"; its conflict score finds
   planted conflicts better that way, benchmarks/results/cacr_auroc_search.md) and an option of EBMC's.
   Paper leaves the encoder architecture open; we use Accord's :class:`SequenceEncoder` (position-wise linear,
   then an optional residual temporal conv or transformer layer) with an optional output activation
   (``"none"`` by default; MISA uses ``"sigmoid"``);
3. the soft orthogonality loss ``L_o = sum_m |cos(vec H_m^(i), vec P_m^(i))|`` (:meth:`orthogonality`; per-sample
   values from :func:`accord.objectives.decoupling.soft_orthogonality`), per sample ``[B]`` (summed over the
   modalities present in the sample) or as the batch form ``sum_m mean_{i: m present}``.

:meth:`decouple` can be called again on any ``d``-channel sequences with the SAME encoders (CACR re-decouples its
cross-reconstructions this way). Everything is masked: padded steps are zero in every output, results do not depend
on the amount of padding, and a missing modality (no valid step) gives zeros.

Example (EBMC-style use)::

    block = Decoupling(dims, 32)
    out = block(batch.features, batch.mask)          # DecoupledSequences(projected, shared, private, mask)
    l_o = block.orthogonality(out.shared, out.private, out.mask)
    h_text = masked_mean(out.shared["text"], out.mask["text"])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, NamedTuple, cast

import torch
from torch import Tensor, nn

from accord.core.types import MODALITIES
from accord.models.modules.encoders import SequenceEncoder, Temporal, TemporalConv1d
from accord.models.modules.pooling import downsample_mean
from accord.objectives.decoupling import soft_orthogonality

__all__ = ["DecoupledSequences", "Decoupling", "OutputActivation", "SharedMode"]

SharedMode = Literal["common", "separate"]
OutputActivation = Literal["none", "tanh", "sigmoid"]


class DecoupledSequences(NamedTuple):
    """What :class:`Decoupling` returns; every dict maps modality -> ``[B, T'_m, d]`` (``mask``: ``[B, T'_m]``).

    ``T'_m`` is ``ceil(T_m / downsample_m)``; ``projected`` is ``X^_m``, ``shared`` is ``H_m``, ``private`` ``P_m``.
    """

    projected: dict[str, Tensor]
    shared: dict[str, Tensor]
    private: dict[str, Tensor]
    mask: dict[str, Tensor]


class Decoupling(nn.Module):
    """Project each modality to ``dim`` channels and split it into shared and private sequences.

    Args:
        dims: modality -> input feature size ``D_m``.
        dim: ``d``, the width of projected, shared and private sequences.
        kernel_size: odd kernel of the temporal projection convolutions.
        shared_encoder: ``"common"`` (one shared encoder for all modalities) or ``"separate"``.
        temporal: temporal layer inside each encoder (``"none"``, ``"conv"``, ``"transformer"``).
        encoder_kernel: odd kernel of the encoders' temporal convolution.
        heads: heads of the encoders' transformer layer (``temporal="transformer"``).
        dropout: dropout inside the encoders.
        activation: applied to ``H`` and ``P`` (``"none"``, ``"tanh"``, ``"sigmoid"``).
        downsample: modality -> window of the masked mean applied after the projection (1 = off).
        modalities: which modalities to handle (default all three, in ``MODALITIES`` order).
    """

    def __init__(self, dims: Mapping[str, int], dim: int, kernel_size: int = 3,
                 shared_encoder: SharedMode = "common", temporal: Temporal = "conv", encoder_kernel: int = 3,
                 heads: int = 4, dropout: float = 0.1, activation: OutputActivation = "none",
                 downsample: Mapping[str, int] | None = None, modalities: Sequence[str] = MODALITIES) -> None:
        super().__init__()
        if shared_encoder not in ("common", "separate"):
            raise ValueError(f"shared_encoder must be 'common' or 'separate', got {shared_encoder!r}")
        if activation not in ("none", "tanh", "sigmoid"):
            raise ValueError(f"activation must be 'none', 'tanh' or 'sigmoid', got {activation!r}")
        self.modalities = tuple(modalities)
        self.dim, self.shared_mode, self.activation = dim, shared_encoder, activation
        self.downsample = {m: int((downsample or {}).get(m, 1)) for m in self.modalities}

        def encoder() -> SequenceEncoder:
            return SequenceEncoder(dim, dim, projection="linear", temporal=temporal, kernel_size=encoder_kernel,
                                   heads=heads, dropout=dropout)

        self.proj = nn.ModuleDict({m: TemporalConv1d(dims[m], dim, kernel_size) for m in self.modalities})
        if shared_encoder == "common":
            self.shared_common: SequenceEncoder | None = encoder()
            self.shared_separate: nn.ModuleDict | None = None
        else:
            self.shared_common = None
            self.shared_separate = nn.ModuleDict({m: encoder() for m in self.modalities})
        self.private = nn.ModuleDict({m: encoder() for m in self.modalities})

    def shared_encoder(self, modality: str) -> SequenceEncoder:
        """The shared encoder ``E_s`` used for ``modality`` (the same module for all in ``"common"`` mode)."""
        if self.shared_common is not None:
            return self.shared_common
        assert self.shared_separate is not None
        return cast(SequenceEncoder, self.shared_separate[modality])  # a ModuleDict item is typed as Module

    def activate(self, x: Tensor, mask: Tensor) -> Tensor:
        """The block's output activation (``activation``), then zero where ``mask`` is False."""
        if self.activation == "tanh":
            x = torch.tanh(x)
        elif self.activation == "sigmoid":
            x = torch.sigmoid(x)
        return x * mask.unsqueeze(-1).to(x.dtype)

    def project(self, features: Mapping[str, Tensor], mask: Mapping[str, Tensor]) -> tuple[dict[str, Tensor],
                                                                                          dict[str, Tensor]]:
        """Step 1: ``X^_m = Conv1D(X_m)`` (then optional window averaging); returns ``(projected, mask)``."""
        out: dict[str, Tensor] = {}
        masks: dict[str, Tensor] = {}
        for m in self.modalities:
            x = self.proj[m](features[m], mask[m])
            out[m], masks[m] = downsample_mean(x, mask[m], self.downsample[m])
        return out, masks

    def decouple(self, projected: Mapping[str, Tensor], mask: Mapping[str, Tensor]) -> tuple[dict[str, Tensor],
                                                                                            dict[str, Tensor]]:
        """Step 2 on ``d``-channel sequences: ``(H, P)`` with ``H_m = E_s(X_m)``, ``P_m = E_p^m(X_m)``."""
        shared: dict[str, Tensor] = {}
        private: dict[str, Tensor] = {}
        for m in projected:
            shared[m] = self.activate(self.shared_encoder(m)(projected[m], mask[m]).seq, mask[m])
            private[m] = self.activate(self.private[m](projected[m], mask[m]).seq, mask[m])
        return shared, private

    def forward(self, features: Mapping[str, Tensor], mask: Mapping[str, Tensor]) -> DecoupledSequences:
        projected, masks = self.project(features, mask)
        shared, private = self.decouple(projected, masks)
        return DecoupledSequences(projected, shared, private, masks)

    @staticmethod
    def orthogonality(shared: Mapping[str, Tensor], private: Mapping[str, Tensor], mask: Mapping[str, Tensor],
                      per_sample: bool = False) -> Tensor:
        """Soft orthogonality with ``o_m(i) = |cos(vec H_m^(i), vec P_m^(i))|`` and ``p_m(i)`` = m present in i.

        ``per_sample``: ``L_o(i) = sum_m p_m(i) o_m(i)`` ``[B]`` (the trainer takes its (weighted) mean over the
        batch). Otherwise the scalar ``L_o = sum_m mean_{i: p_m(i)} o_m(i)``, each modality averaged over the
        samples where it is present. The two agree in the batch mean when every modality is present; with missing
        modalities the per-sample form divides by the batch size, not by each modality's count of present samples.
        """
        total: Tensor | None = None
        for m in shared:
            per = soft_orthogonality(shared[m], private[m], mask[m])
            present = mask[m].any(dim=1).to(per.dtype)
            term = per * present if per_sample else (per * present).sum() / present.sum().clamp_min(1.0)
            total = term if total is None else total + term
        assert total is not None, "orthogonality needs at least one modality"
        return total
