"""What the balancing plugins need to know about a model: which parameters belong to which modality, and what
each modality alone "says" (its mono-modal response).

**The parameter convention.** A model may define ``modality_parameters() -> dict[str, list[nn.Parameter]]``: for
each modality, the parameters that see that modality only (its encoder / branch), never shared fusion parameters.
Late fusion, early fusion, TFN, MulT and CP+SL implement it. For any other model :func:`modality_parameters` falls
back on parameter names: a parameter belongs to modality ``m`` when one component of its dotted name is ``m``, or
starts with ``m_`` or ends with ``_m`` (``encoders.text.proj.weight``, ``audio_encoder.fc.bias``,
``proj_visual.weight``), and no other modality matches it (names mixing modalities, e.g. ``cross.text_from_audio``,
are shared and left alone).

**Mono-modal responses** (:func:`modality_responses`), used to score each modality for OGM-GE and AGM:

* ``heads``: the model's own unimodal predictions ``aux_predictions["unimodal_<m>"]`` (late fusion, CP+SL);
* ``shapley``: the zero-padding Shapley decomposition of AGM (Li et al., ICCV 2023, Sec. 3.2): the fused output
  ``f`` is evaluated with every subset of modalities replaced by zeros (``2^K`` forward passes, eval mode, no
  gradient) and the mono-modal output of ``m`` is ``φ_m + f(∅)/K`` with ``φ_m`` the Shapley value of ``m``, so the
  mono-modal outputs sum to ``f(all)``. For classification that is AGM's mono-modal output (logits); for
  regression we return ``K·(φ_m + f(∅)/K) = f(∅) + K·φ_m``, on the label's scale (the average over modalities is
  the fused prediction), so it can be compared with the label;
* ``auto``: ``heads`` when the model emits all of them, else ``shapley``.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import torch
from torch import Tensor, nn

from accord.balance.params import ResponseSource
from accord.core.errors import ConfigError
from accord.core.types import MODALITIES, Batch, ModelOutput


def _owner(name: str) -> str | None:
    hits = set()
    for part in name.split("."):
        for m in MODALITIES:
            if part == m or part.startswith(f"{m}_") or part.endswith(f"_{m}"):
                hits.add(m)
    return hits.pop() if len(hits) == 1 else None


def modality_parameters(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """Modality -> parameters that process that modality only (see the module docstring for the convention).

    Uses ``model.modality_parameters()`` when the model defines it, else the name fallback. Parameters that do not
    require grad are dropped.
    """
    fn = getattr(model, "modality_parameters", None)
    if callable(fn):
        groups: dict[str, list[nn.Parameter]] = fn()
    else:
        groups = {m: [] for m in MODALITIES}
        for name, p in model.named_parameters():
            owner = _owner(name)
            if owner is not None:
                groups[owner].append(p)
    text_input = getattr(model, "text_input", None)  # a pretrained text branch (models.create_model) is text's
    if isinstance(text_input, nn.Module):
        have = {id(p) for p in groups.get("text", [])}
        groups["text"] = [*groups.get("text", []), *(p for p in text_input.parameters() if id(p) not in have)]
    return {m: [p for p in groups.get(m, []) if p.requires_grad] for m in MODALITIES}


def require_modality_parameters(model: nn.Module, hook: str) -> dict[str, list[nn.Parameter]]:
    """:func:`modality_parameters`, or a ConfigError when no modality owns any parameter (nothing to modulate)."""
    groups = modality_parameters(model)
    if not any(groups.values()):
        raise ConfigError(f"train.hooks: {hook!r} needs modality-specific parameters, but model "
                          f"{type(model).__name__} defines no modality_parameters() and no parameter name names a "
                          f"modality")
    return groups


def present_rows(batch: Batch, modality: str) -> Tensor:
    """``[B]`` bool: the samples where ``modality`` is present (all True for a name outside MODALITIES)."""
    if modality in MODALITIES and batch.present.ndim == 2:
        return batch.present[:, MODALITIES.index(modality)].bool()
    return torch.ones(batch.size, dtype=torch.bool, device=batch.label.device)


def zero_modalities(batch: Batch, drop: tuple[str, ...]) -> Batch:
    """A shallow copy of ``batch`` whose features of the modalities in ``drop`` are zero (masks unchanged), i.e.
    AGM's zero padding. Everything else (labels, ids, extras, transcript tokens) is kept. A pretrained text branch
    reads ``text_tokens``, not the text features, so where text is dropped and the batch carries tokens, text is
    also marked absent (the branch then outputs zeros for it, see ``models.base._pretrained_text``)."""
    feats = {m: (torch.zeros_like(x) if m in drop else x) for m, x in batch.features.items()}
    present = batch.present
    if "text" in drop and batch.text_tokens is not None and present.ndim == 2:
        present = present.clone()
        present[:, MODALITIES.index("text")] = False
    return dataclasses.replace(batch, features=feats, present=present)


@torch.no_grad()
def shapley_responses(model: nn.Module, batch: Batch, modalities: tuple[str, ...] = MODALITIES,
                      scale_to_label: bool = True) -> dict[str, Tensor]:
    """AGM's zero-padding mono-modal outputs ``φ_m + f(∅)/K`` (times ``K`` when ``scale_to_label``), per modality.

    Runs ``model`` on every subset of ``modalities`` kept (the others zeroed) in eval mode without gradient, then
    restores the training mode; no random numbers are drawn (dropout is off), so the training trajectory of a
    caller's other randomness is unchanged.
    """
    k = len(modalities)
    was_training = model.training
    model.eval()
    try:
        values: dict[frozenset[str], Tensor] = {}
        for r in range(k + 1):
            for keep in itertools.combinations(modalities, r):
                drop = tuple(m for m in modalities if m not in keep)
                values[frozenset(keep)] = model(zero_modalities(batch, drop)).prediction.detach().float()
    finally:
        model.train(was_training)
    empty = values[frozenset()]
    out: dict[str, Tensor] = {}
    for m in modalities:
        others = [n for n in modalities if n != m]
        phi = torch.zeros_like(empty)
        for r in range(k):
            weight = math.factorial(r) * math.factorial(k - r - 1) / math.factorial(k)
            for sub in itertools.combinations(others, r):
                s = frozenset(sub)
                phi = phi + weight * (values[s | {m}] - values[s])
        mono = phi + empty / k
        out[m] = mono * k if scale_to_label else mono
    return out


def modality_responses(model: nn.Module, batch: Batch, output: ModelOutput, source: ResponseSource,
                       task_kind: str = "regression") -> dict[str, Tensor]:
    """Per-modality responses (predictions or logits, detached) from the unimodal heads or AGM's zero padding."""
    heads = {m: output.aux_predictions.get(f"unimodal_{m}") for m in MODALITIES}
    have_heads = all(v is not None for v in heads.values())
    if source == "heads" and not have_heads:
        raise ConfigError(f"train.hooks: response source 'heads' needs aux_predictions unimodal_<m> for every "
                          f"modality; model {type(model).__name__} emits {sorted(output.aux_predictions)}")
    if source == "heads" or (source == "auto" and have_heads):
        return {m: v.detach().float() for m, v in heads.items() if v is not None}
    return shapley_responses(model, batch, scale_to_label=task_kind == "regression")
