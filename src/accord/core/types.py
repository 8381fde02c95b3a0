"""Core types shared by data, models and the trainer: modalities, :class:`Batch` and :class:`ModelOutput`.

Importing this module does not import torch (the tensors are only annotations), so light commands such as
``accord list`` and the config's modality names stay fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import torch
    from torch import Tensor

MODALITIES: Final[tuple[str, str, str]] = ("text", "audio", "visual")
"""The three modalities, in the canonical order used for ``Batch.present`` columns and stacked tensors."""


@dataclass
class Batch:
    """A mini-batch of padded multimodal sequences.

    Attributes:
        features: modality -> float tensor ``[B, T_m, D_m]`` (zero-padded after the real steps).
        mask: modality -> bool tensor ``[B, T_m]``; True marks a real time step.
        present: bool ``[B, 3]``; column ``k`` says whether modality ``MODALITIES[k]`` is available at all
            (False for a dropped/missing modality, whose features are then all zero).
        label: ``[B]`` float regression scores, or long class indices for classification.
        unimodal_labels: optional modality -> ``[B]`` float labels (CH-SIMS).
        ids: sample ids.
        extras: optional per-sample tensors carried through (e.g. ConflictBench's ``conflict`` flag);
            ``sample_weight`` (``[B]``, QASA's quality scores) weights every loss term of the sample.
        text_tokens: optional long ``[B, 3, L]`` transcript tokens for a pretrained text encoder, MMSA's
            ``text_bert`` layout: row 0 the token ids, row 1 the attention mask (1 = real token), row 2 the segment
            ids; ``L`` is the longest real token count in the batch (dynamic padding).
    """

    features: dict[str, Tensor]
    mask: dict[str, Tensor]
    present: Tensor
    label: Tensor
    unimodal_labels: dict[str, Tensor] = field(default_factory=dict)
    ids: list[str] = field(default_factory=list)
    extras: dict[str, Tensor] = field(default_factory=dict)
    text_tokens: Tensor | None = None

    @property
    def text(self) -> Tensor:
        return self.features["text"]

    @property
    def audio(self) -> Tensor:
        return self.features["audio"]

    @property
    def visual(self) -> Tensor:
        return self.features["visual"]

    @property
    def size(self) -> int:
        return int(self.label.shape[0])

    def lengths(self, modality: str) -> Tensor:
        """Number of real steps per sample for ``modality`` (``[B]`` long)."""
        return self.mask[modality].sum(dim=1)

    def _all_on(self, device: torch.device) -> bool:
        """Whether every tensor of the batch is on ``device`` exactly (a device without an index, such as
        ``cuda``, never matches one with an index: such a batch goes through :meth:`to`'s copy)."""
        tensors = [*self.features.values(), *self.mask.values(), self.present, self.label,
                   *self.unimodal_labels.values(), *self.extras.values()]
        if self.text_tokens is not None:
            tensors.append(self.text_tokens)
        return all(t.device == device for t in tensors)

    def select(self, rows: slice) -> Batch:
        """The rows ``rows`` of this batch (padding kept as is); used to give each distributed rank its slice."""
        return Batch(
            features={k: v[rows] for k, v in self.features.items()},
            mask={k: v[rows] for k, v in self.mask.items()},
            present=self.present[rows],
            label=self.label[rows],
            unimodal_labels={k: v[rows] for k, v in self.unimodal_labels.items()},
            ids=list(self.ids[rows]),
            extras={k: v[rows] for k, v in self.extras.items()},
            text_tokens=None if self.text_tokens is None else self.text_tokens[rows],
        )

    def to(self, device: torch.device | str) -> Batch:
        """Return a copy with every tensor on ``device`` (a ``torch.device`` or its string, e.g. ``"cuda:1"``), or
        this batch itself when every tensor is already there (the usual case on CPU: no per-step copy of its
        containers)."""
        import torch  # loaded already (the batch holds tensors); this module does not import it at load time

        dev = device  # Tensor.to takes either form
        if self._all_on(torch.device(device)):
            return self
        return Batch(
            features={k: v.to(dev) for k, v in self.features.items()},
            mask={k: v.to(dev) for k, v in self.mask.items()},
            present=self.present.to(dev),
            label=self.label.to(dev),
            unimodal_labels={k: v.to(dev) for k, v in self.unimodal_labels.items()},
            ids=list(self.ids),
            extras={k: v.to(dev) for k, v in self.extras.items()},
            text_tokens=None if self.text_tokens is None else self.text_tokens.to(dev),
        )


@dataclass
class ModelOutput:
    """What every model's ``forward(batch)`` returns.

    Attributes:
        prediction: ``[B]`` regression scores, or ``[B, C]`` class logits.
        aux_predictions: named auxiliary predictions of the same shape as ``prediction`` (unimodal, shared,
            private heads); the trainer applies the task loss to each, weighted by ``loss_weights[name]``.
        losses: named unweighted auxiliary losses, each a scalar (a batch-level loss: a statistic over the batch such
            as CMD or CP+SL's SL) or a per-sample tensor ``[B]``. The trainer reduces a ``[B]`` loss to the weighted
            mean with the batch's sample weights ``w = extras["sample_weight"]``,
            ``sum_i w_i l_i / max(sum_i w_i, 1e-12)`` (the plain mean without them; the task loss's reduction,
            :func:`accord.objectives.task.reduce_per_sample`), then multiplies it by ``loss_weights[name]``. A loss
            that is per sample must be returned per sample, so a sample of weight 0 trains nothing; a batch-level
            loss may read the sample weights to weight its statistics (never to scale the loss).
        aux_weights: optional per-sample weights ``[B]`` for an auxiliary prediction of the same name (e.g. 0 where
            the modality of a unimodal head is missing, so the head is not trained to predict from zeros).
        diagnostics: named per-sample values ``[B]`` or ``[B, k]`` saved at evaluation (conflict, trust, ...).
        features: modality -> ``[B, d]`` representation at the fusion input (for gradient monitoring).
    """

    prediction: Tensor
    aux_predictions: dict[str, Tensor] = field(default_factory=dict)
    losses: dict[str, Tensor] = field(default_factory=dict)
    aux_weights: dict[str, Tensor] = field(default_factory=dict)
    diagnostics: dict[str, Tensor] = field(default_factory=dict)
    features: dict[str, Tensor] = field(default_factory=dict)
