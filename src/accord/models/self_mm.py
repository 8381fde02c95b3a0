"""Self-MM: self-supervised multi-task learning with generated unimodal labels (without BERT fine-tuning).

Yu, Xu, Yuan, Wu, "Learning Modality-Specific Representations with Self-Supervised Multi-Task Learning for
Multimodal Sentiment Analysis", AAAI 2021. Equation numbers below are the paper's.

Network (paper Sec. "Multimodal Task" / "Unimodal Task"): each modality's utterance representation ``F_s``
(paper: fine-tuned BERT for text, sLSTMs for audio/visual; here the shared
:class:`~accord.models.modules.SequenceEncoder` on the dataset's features, zero for a missing modality);

* multimodal task: ``F_m* = ReLU(W_1^m Drop([F_t; F_a; F_v]) + b)`` and ``y^_m = W_3^m ReLU(W_2^m F_m* + b) + b``;
* unimodal tasks ``s in {t, a, v}``: ``F_s* = ReLU(W_1^s Drop(F_s) + b)`` and ``y^_s = W_3^s ReLU(W_2^s F_s* + b)
  + b`` (the unimodal heads do not feed the multimodal prediction; they shape the shared encoders).

ULGM, the unimodal label generation module, produces the unimodal targets ``y_s`` from the multimodal label
``y_m`` and the post-layer-1 representations ``F_i* (i in {m, t, a, v})`` of the TRAINING samples, kept in a
per-sample memory keyed by ``batch.ids``:

* Eq. 6, class centres over the training samples (``y_i`` is modality ``i``'s own label: ``y_m`` for the fusion,
  the current generated ``y_s`` for a unimodal task; samples labelled exactly 0 belong to neither class)::

      C_i^p = sum_j F_ij I(y_i(j) > 0) / sum_j I(y_i(j) > 0),   C_i^n = sum_j F_ij I(y_i(j) < 0) / sum_j I(y_i(j) < 0)

* Eq. 7, distances ``D_i^p = ||F_i - C_i^p||_2^2 / sqrt(d_i)``, ``D_i^n = ||F_i - C_i^n||_2^2 / sqrt(d_i)``
  (``distance="squared"``); the released code (MMSA) uses the plain L2 norm ``D = ||F_i - C_i||_2``
  (``distance="l2"``, our default). With squared distances ``alpha`` grows like ``1 / D^p``, so a well-fitted
  fusion representation (small ``D_m^p``) makes the additive term of Eq. 10 dominate: on MOSI-U's training samples
  the generated audio/visual labels then collapse towards ``-H`` (correlation with ``y_m`` about -0.6 after
  9 epochs), while with ``l2`` they stay correlated with ``y_m`` (0.7-0.96);
* Eq. 8, relative distance ``alpha_i = (D_i^n - D_i^p) / (D_i^p + eps)``;
* Eqs. 9-11, the shifting value: ``y_s / y_m ∝ alpha_s / alpha_m`` (Eq. 9) and ``y_s - y_m ∝ alpha_s - alpha_m``
  (Eq. 10), averaged (Eq. 11)::

      y_s = 1/2 * (y_m * alpha_s / (alpha_m + eps) + y_m + alpha_s - alpha_m)
          = y_m + (alpha_s - alpha_m) / (alpha_m + eps) * (y_m + alpha_m) / 2      (up to eps)

  clipped to ``[-H, H]`` (``label_bound``; the released code's ``H``, the label range);
* Eq. 12, the momentum update over epochs ``n`` (1-based): ``y_s^(1) = y_m`` and, from epoch 2,
  ``y_s^(n) = (n - 1) / (n + 1) * y_s^(n-1) + 2 / (n + 1) * y_s^n`` (``y_s^n``: the label generated in epoch ``n``).

Loss (Eq. 13): ``L = 1/N sum_i ( |y^_m^i - y_m^i| + sum_s W_s^i |y^_s^i - y_s^i| )`` with the per-sample weight
``W_s^i = tanh(|y_s^i - y_m^i|)``: a unimodal head is trained only as far as its label departs from the
multimodal one (in epoch 1, ``y_s = y_m``, so the unimodal losses are zero). The multimodal term is the trainer's
task loss (``train.loss`` l1 = the paper's); the unimodal terms are the model's ``losses`` ``uni_text``,
``uni_audio``, ``uni_visual`` (``default_loss_weights`` 1, as in the paper), each per sample ``[B]``:
``W_s^i |y^_s^i - y_s^i|`` (0 where modality ``s`` is missing), averaged over the batch by the trainer (weighted by
the samples' ``sample_weight`` where the batch has them, e.g. QASA).

Timing, as in the released code: every training step first computes the losses with the current labels; after
``backward`` (the ``self_mm_ulgm`` hook of :mod:`accord.balance.ulgm`, named by :meth:`SelfMM.required_hooks`,
calls :meth:`SelfMM.ulgm_step`) the
batch's labels are regenerated from the batch's (detached) representations and the centres of the memory as it
stood before the step (epochs >= ``update_start_epoch``, paper: 2), then the batch's representations are stored.
The memory is only written by that hook during training (``model.training``), only from training batches, so
validation / test labels are never used; evaluation never reads it.

Memory and checkpoints: the memory (ids -> representations and generated labels) is NOT in ``state_dict`` (string
ids cannot go to safetensors), so ``best.safetensors`` and ``last.pt`` hold only the weights. On ``--resume`` the
memory is rebuilt like the paper's initialisation: labels restart at ``y_m`` and the label updates start again one
epoch after the resumed epoch (once a full epoch of representations is in memory), with the momentum weights of
the global epoch number. A resumed run is therefore not bit-identical to an uninterrupted one. Without the hook
(a hand-written loop that never calls :meth:`SelfMM.ulgm_step`) the labels stay ``y_m`` and the unimodal losses
are zero. The memory is per process: under distributed training each rank keeps the memory of the rows it
trained on (rank 0's memory is what ``ulgm_labels.npz`` holds), so centres and labels differ from a
single-process run.

Outputs: diagnostics ``unimodal_<m>`` (``y^_s``, the unimodal heads' predictions; for held-out samples the
estimate of the unimodal label); the generated labels of the training samples are handed by the hook to the
trainer, which writes them to ``seed_<s>/ulgm_labels.npz`` (``id``, ``label_multimodal``, ``label_<m>``) after
every epoch, and the mean drift ``|y_s - y_m|`` over the memory is logged per epoch as ``ulgm_drift_<m>`` in
``log.jsonl``. Regression only.

Deviations: no BERT fine-tuning (the dataset's text features through the shared encoder), one optimiser and
learning rate for everything (the released code uses separate ones for BERT, audio, visual and the rest), no
gradient accumulation (``update_epochs``), default sizes smaller than MMSA's (post-fusion 128, text 32, audio 16,
visual 32).
"""

from __future__ import annotations

import math
from typing import ClassVar, cast

import numpy as np
import torch
from torch import Tensor, nn

from accord.core.errors import ConfigError
from accord.core.types import MODALITIES, Batch, ModelOutput
from accord.models.base import AccordModel, ModelParams, register_model, squeeze_head
from accord.models.modules import Dropout, build_encoder, encode_pooled, encode_pooled_stacked
from accord.models.modules.grouped import grouped_linear
from accord.models.params.self_mm import Distance, SelfMMDeclaration

TASKS: tuple[str, str, str, str] = ("fusion", *MODALITIES)
"""ULGM's tasks: the multimodal one (``m`` in the paper) and the three unimodal ones."""

EPS: float = 1e-8
"""The paper's small number in Eqs. 8 and 11 (the released code's ``MIN``)."""


# --------------------------------------------------------------------------- ULGM (pure functions)
def class_members(labels: Tensor, keep: Tensor | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """Eq. 6's class indicators ``[..., 2, N]`` of ``labels [..., N]`` as ``dtype`` (row 0: ``I(y > 0)``, row 1:
    ``I(y < 0)``) over the rows where ``keep [..., N]`` (bool) is True (all rows when None): samples labelled 0
    belong to neither class."""
    pos, neg = labels > 0, labels < 0
    if keep is not None:
        pos, neg = pos & keep, neg & keep
    return torch.stack([pos, neg], dim=-2).to(dtype)


def member_centres(member: Tensor, feats: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Eq. 6 from the class indicators ``member [..., 2, N]`` (:func:`class_members`) of ``feats [..., N, d]``:
    ``(C^p [..., d], C^n [..., d], defined [...])``, ``defined`` False where a class is empty (its centre is then 0
    and must not be used). One ``[..., 2, N] @ [..., N, d]`` product of the indicators (ULGM runs this over the whole
    memory every training step: a boolean gather of the rows cost several times more)."""
    counts = member.sum(dim=-1)
    centres = (member @ feats) / counts.clamp_min(1.0).unsqueeze(-1)
    return centres[..., 0, :], centres[..., 1, :], counts.all(dim=-1)


def stacked_class_centres(feats: Tensor, labels: Tensor, keep: Tensor | None = None
                          ) -> tuple[Tensor, Tensor, Tensor]:
    """Eq. 6 for one or more tasks at once: ``feats [..., N, d]`` under ``labels [..., N]`` over the rows where
    ``keep [..., N]`` (bool) is True (all rows when None) give ``(C^p [..., d], C^n [..., d], defined [...])``
    (:func:`member_centres` of :func:`class_members`); for the three unimodal tasks one batched product."""
    return member_centres(class_members(labels, keep, feats.dtype), feats)


def class_centres(feats: Tensor, labels: Tensor, keep: Tensor | None = None) -> tuple[Tensor, Tensor] | None:
    """Eq. 6: the positive and negative class centres ``(C^p, C^n)`` of ``feats [N, d]`` under ``labels [N]``,
    over the rows where ``keep [N]`` (bool) is True (all rows when None); ``None`` when one of the classes is empty
    (no centre). :func:`stacked_class_centres` for one task."""
    pos, neg, defined = stacked_class_centres(feats, labels, keep)
    return (pos, neg) if bool(defined) else None


def relative_distance(feats: Tensor, centres: tuple[Tensor, Tensor], distance: Distance = "l2") -> Tensor:
    """Eqs. 7-8: ``alpha = (D^n - D^p) / (D^p + eps)`` per row of ``feats [B, d]``.

    ``squared`` (paper Eq. 7): ``D = ||F - C||_2^2 / sqrt(d)``; ``l2`` (released code): ``D = ||F - C||_2``.
    """
    pos, neg = centres
    if distance == "squared":
        scale = math.sqrt(feats.shape[-1])
        d_p = (feats - pos).pow(2).sum(-1) / scale
        d_n = (feats - neg).pow(2).sum(-1) / scale
    else:
        d_p = (feats - pos).norm(dim=-1)
        d_n = (feats - neg).norm(dim=-1)
    return (d_n - d_p) / (d_p + EPS)


def shifted_label(y_m: Tensor, alpha_m: Tensor, alpha_s: Tensor, bound: float | None = None) -> Tensor:
    """Eqs. 9-11: ``y_s = (y_m alpha_s / (alpha_m + eps) + y_m + alpha_s - alpha_m) / 2``, clipped to ``[-H, H]``."""
    y_s = 0.5 * (y_m * alpha_s / (alpha_m + EPS) + y_m + alpha_s - alpha_m)
    return y_s if bound is None else y_s.clamp(-bound, bound)


def momentum_update(previous: Tensor, generated: Tensor, epoch: int) -> Tensor:
    """Eq. 12 for epoch ``n >= 2`` (1-based): ``(n - 1) / (n + 1) * previous + 2 / (n + 1) * generated``."""
    if epoch < 2:
        raise ValueError(f"the momentum update starts at epoch 2 (y_s^(1) = y_m), got epoch {epoch}")
    return (epoch - 1) / (epoch + 1) * previous + 2 / (epoch + 1) * generated


def unimodal_weights(y_s: Tensor, y_m: Tensor) -> Tensor:
    """Eq. 13's per-sample weight of a unimodal task: ``W_s = tanh(|y_s - y_m|)``."""
    return torch.tanh((y_s - y_m).abs())


class LabelMemory:
    """ULGM's per-sample memory over the training samples, keyed by sample id.

    Rows are added lazily the first time an id is seen; a new row's labels start at ``y_m`` for every task (the
    paper's ``y_s^(1) = y_m``). ``features[t]`` holds the last stored representation ``F_t*`` of each row
    (``stored[t]`` False until one is), ``labels["fusion"]`` the multimodal labels, ``labels[m]`` the generated
    unimodal labels. The three unimodal tasks (one width) live in stacked tensors, ``uni_features [3, N, d]``,
    ``uni_stored [3, N]`` and ``uni_labels [3, N]`` (in :data:`MODALITIES` order), of which ``features[m]``,
    ``stored[m]`` and ``labels[m]`` are views, so ULGM updates them in one pass. The multimodal labels never change,
    so their class indicators (:func:`class_members`, ``fusion_member [2, N]``) are kept from when a row is added.
    Everything lives on the CPU and is never part of the model's ``state_dict``.
    """

    def __init__(self, dims: dict[str, int]) -> None:
        widths = {dims[m] for m in MODALITIES}
        if len(widths) != 1:
            raise ValueError(f"the unimodal tasks share one width in the label memory, got {dims}")
        self.dims = dict(dims)
        self.index: dict[str, int] = {}
        self.features = {"fusion": torch.zeros(0, dims["fusion"])}
        self.stored = {"fusion": torch.zeros(0, dtype=torch.bool)}
        self.labels = {"fusion": torch.zeros(0)}
        self.fusion_member = torch.zeros(2, 0)
        self.uni_features = torch.zeros(len(MODALITIES), 0, widths.pop())
        self.uni_stored = torch.zeros(len(MODALITIES), 0, dtype=torch.bool)
        self.uni_labels = torch.zeros(len(MODALITIES), 0)
        self._views()
        self.first_epoch: int | None = None

    def _views(self) -> None:
        for k, m in enumerate(MODALITIES):
            self.features[m], self.stored[m], self.labels[m] = (self.uni_features[k], self.uni_stored[k],
                                                                self.uni_labels[k])

    def __len__(self) -> int:
        return len(self.index)

    def rows(self, ids: list[str], y_m: Tensor) -> Tensor:
        """Row of each id (``[B]`` long), adding unseen ids with every label set to their ``y_m``."""
        fresh: dict[str, float] = {}  # unseen ids in order of appearance (a repeated id gets one row)
        for i, y in zip(ids, y_m.tolist(), strict=True):
            if i not in self.index:
                fresh.setdefault(i, float(y))
        new = list(fresh.items())
        if new:
            start = len(self.index)
            for k, (i, _) in enumerate(new):
                self.index[i] = start + k
            y0 = torch.tensor([y for _, y in new], dtype=torch.float32)
            n, u = len(new), len(MODALITIES)
            self.features["fusion"] = torch.cat([self.features["fusion"], torch.zeros(n, self.dims["fusion"])])
            self.stored["fusion"] = torch.cat([self.stored["fusion"], torch.zeros(n, dtype=torch.bool)])
            self.labels["fusion"] = torch.cat([self.labels["fusion"], y0])
            self.fusion_member = torch.cat([self.fusion_member, class_members(y0)], dim=1)
            self.uni_features = torch.cat([self.uni_features, self.uni_features.new_zeros(u, n,
                                                                                          self.uni_features.shape[2])],
                                          dim=1)
            self.uni_stored = torch.cat([self.uni_stored, torch.zeros(u, n, dtype=torch.bool)], dim=1)
            self.uni_labels = torch.cat([self.uni_labels, y0.expand(u, n)], dim=1)
            self._views()
        return torch.tensor([self.index[i] for i in ids], dtype=torch.long)

    def lookup(self, ids: list[str], y_m: Tensor) -> dict[str, Tensor]:
        """Generated labels of ``ids`` per modality (``[B]``, CPU); an id not in memory gets its ``y_m``."""
        return dict(zip(MODALITIES, self.lookup_stacked(ids, y_m).unbind(0), strict=True))

    def lookup_stacked(self, ids: list[str], y_m: Tensor) -> Tensor:
        """:meth:`lookup` as one ``[3, B]`` tensor (modalities in :data:`MODALITIES` order)."""
        y = y_m.detach().float().cpu()
        rows = [self.index.get(i, -1) for i in ids]
        if all(r >= 0 for r in rows):  # every id seen (every step after the first epoch): a plain gather
            return self.uni_labels[:, torch.tensor(rows, dtype=torch.long)]
        if all(r < 0 for r in rows):
            return y.expand(len(MODALITIES), -1).clone()
        known = torch.tensor([r >= 0 for r in rows], dtype=torch.bool)
        found = self.uni_labels[:, torch.tensor([max(r, 0) for r in rows], dtype=torch.long)]
        return torch.where(known, found, y)

    def centres(self, task: str) -> tuple[Tensor, Tensor] | None:
        """Eq. 6 for ``task`` over the rows with a stored representation."""
        return class_centres(self.features[task], self.labels[task], self.stored[task])

    def fusion_centres(self) -> tuple[Tensor, Tensor] | None:
        """:meth:`centres` of the multimodal task from the kept class indicators of its fixed labels (the same
        numbers in fewer operations per training step)."""
        pos, neg, defined = member_centres(self.fusion_member * self.stored["fusion"], self.features["fusion"])
        return (pos, neg) if bool(defined) else None


# --------------------------------------------------------------------------- the model
@register_model("self_mm")
class SelfMM(SelfMMDeclaration, AccordModel):
    """Self-MM (Yu et al., AAAI 2021): multimodal task + three unimodal tasks with ULGM-generated labels."""

    text_input_form = "pooled"  # an utterance model: a pretrained text branch gives it the sentence vector

    not_vectorisable: ClassVar[str | None] = "its label memory is updated per sample id in Python"
    eager_methods: ClassVar[tuple[str, ...]] = ("labels_so_far",)

    def __init__(self, dims: dict[str, int], out_dim: int, params: ModelParams) -> None:
        super().__init__(dims, out_dim, params)
        p = self.params
        assert isinstance(p, SelfMM.Params)
        if out_dim != 1:
            raise ConfigError("task.kind: self_mm is regression only (ULGM generates signed sentiment scores)")
        self.encoders = nn.ModuleDict({m: build_encoder(dims[m], p) for m in MODALITIES})
        widths = {"fusion": p.post_fusion_dim, **{m: p.post_unimodal_dim for m in MODALITIES}}
        inputs = {"fusion": 3 * p.hidden, **{m: p.hidden for m in MODALITIES}}
        drops = {"fusion": p.post_fusion_dropout, **{m: p.post_unimodal_dropout for m in MODALITIES}}
        self.drop = nn.ModuleDict({t: Dropout(drops[t]) for t in TASKS})
        self.layer1 = nn.ModuleDict({t: nn.Linear(inputs[t], widths[t]) for t in TASKS})
        self.layer2 = nn.ModuleDict({t: nn.Linear(widths[t], widths[t]) for t in TASKS})
        self.layer3 = nn.ModuleDict({t: nn.Linear(widths[t], 1) for t in TASKS})
        self.memory = LabelMemory(widths)

    def modality_parameters(self) -> dict[str, list[nn.Parameter]]:
        """Each modality's encoder and unimodal head (for balancing hooks)."""
        return {m: [*self.encoders[m].parameters(), *self.layer1[m].parameters(), *self.layer2[m].parameters(),
                    *self.layer3[m].parameters()] for m in MODALITIES}

    def forward_features(self, batch: Batch) -> dict[str, Tensor]:
        """Modality -> ``F_s [B, hidden]`` (zero for a missing modality)."""
        p = self.params
        assert isinstance(p, SelfMM.Params)
        return encode_pooled(self.encoders, batch, grouped=p.batch_modalities)

    def representations(self, feats: dict[str, Tensor]) -> dict[str, Tensor]:
        """Task -> ``F_t* [B, width]``, the post-layer-1 representations ULGM works on."""
        inputs = {"fusion": torch.cat([feats[m] for m in MODALITIES], dim=1), **feats}
        return {t: torch.relu(self.layer1[t](self.drop[t](inputs[t]))) for t in TASKS}

    def task_outputs(self, feats: dict[str, Tensor], stacked: Tensor | None = None
                     ) -> tuple[dict[str, Tensor], dict[str, Tensor], Tensor, Tensor]:
        """``(F_t*, y^_t, F_s*, y^_s)``: per task ``t`` the representations (``[B, width]``) and predictions
        (``[B]``), and the three unimodal representations and predictions as one ``[3, B, width]`` and one ``[3, B]``
        tensor (modalities in :data:`MODALITIES` order).

        With ``batch_modalities`` the three unimodal tasks (layers of one shape) run as one batched computation on
        ``stacked`` = ``[F_t; F_a; F_v]`` as ``[3, B, hidden]`` (stacked from ``feats`` when not given): one dropout
        draw and one ``baddbmm`` per layer for the three; the same function, other dropout draws."""
        p = self.params
        assert isinstance(p, SelfMM.Params)
        if not p.batch_modalities:
            reps = self.representations(feats)
            preds = {t: self.layer3[t](torch.relu(self.layer2[t](reps[t]))).squeeze(-1) for t in TASKS}
            return (reps, preds, torch.stack([reps[m] for m in MODALITIES]),
                    torch.stack([preds[m] for m in MODALITIES]))
        fused = torch.relu(self.layer1["fusion"](self.drop["fusion"](torch.cat([feats[m] for m in MODALITIES],
                                                                                dim=1))))
        x = torch.stack([feats[m] for m in MODALITIES]) if stacked is None else stacked
        heads = [[cast(nn.Linear, layer[m]) for m in MODALITIES] for layer in (self.layer1, self.layer2, self.layer3)]
        uni = torch.relu(grouped_linear(self.drop[MODALITIES[0]](x), heads[0]))  # [3, B, width]
        uni_pred = grouped_linear(torch.relu(grouped_linear(uni, heads[1])), heads[2]).squeeze(-1)  # [3, B]
        reps = {"fusion": fused, **dict(zip(MODALITIES, uni.unbind(0), strict=True))}
        preds = {"fusion": self.layer3["fusion"](torch.relu(self.layer2["fusion"](fused))).squeeze(-1),
                 **dict(zip(MODALITIES, uni_pred.unbind(0), strict=True))}
        return reps, preds, uni, uni_pred

    def forward(self, batch: Batch) -> ModelOutput:
        p = self.params
        assert isinstance(p, SelfMM.Params)
        stacked = encode_pooled_stacked(self.encoders, batch) if p.batch_modalities else None
        # (the grouping was decided once, here: where it cannot run, the encoders run one by one)
        feats = encode_pooled(self.encoders, batch, grouped=False) if stacked is None else dict(
            zip(MODALITIES, stacked.unbind(0), strict=True))
        reps, preds, uni_reps, uni_pred = self.task_outputs(feats, stacked)
        diagnostics = dict(zip((f"unimodal_{m}" for m in MODALITIES), uni_pred.detach().unbind(0), strict=True))
        losses: dict[str, Tensor] = {}
        if self.training:
            # Eq. 13's unimodal terms with the labels generated so far (y_m for samples not yet in memory)
            y_m = batch.label.to(preds["fusion"].dtype)
            y_s = self.labels_so_far(batch, y_m).to(y_m.device, y_m.dtype)  # [3, B]
            w = unimodal_weights(y_s, y_m) * batch.present.t()  # (a bool factor: 0 where s is missing)
            uni = w * (uni_pred - y_s).abs()  # [3, B]: per sample; the trainer takes each task's mean
            losses.update({f"uni_{m}": uni[k] for k, m in enumerate(MODALITIES)})
            # the representations, for the hook's memory update (training only; never saved): F_m* [B, d_m] and
            # the unimodal F_s* as one [B, 3, d] (per sample, modalities in MODALITIES order)
            diagnostics["repr_fusion"] = reps["fusion"].detach()
            diagnostics["repr_unimodal"] = uni_reps.detach().transpose(0, 1)
        return ModelOutput(prediction=squeeze_head(preds["fusion"].unsqueeze(-1), self.out_dim), losses=losses,
                           diagnostics=diagnostics, features=feats)

    def labels_so_far(self, batch: Batch, y_m: Tensor) -> Tensor:
        """The unimodal labels ULGM has generated so far for the batch's samples, ``[3, B]`` (CPU, modalities in
        :data:`MODALITIES` order): ``y_m`` for a sample not yet in memory, and for every sample of a batch without one
        id per sample.

        Runs eagerly under ``torch.compile`` (``train.compile``; one of :attr:`eager_methods`): it reads the batch's
        ids and the memory's Python index, which a traced graph would guard on and be rebuilt for at every batch; the
        model's tensor work before and after it stays compiled."""
        ids = batch.ids if len(batch.ids) == batch.size else []
        if ids:
            return self.memory.lookup_stacked(ids, y_m)
        return y_m.detach().cpu().expand(len(MODALITIES), -1)

    @torch.no_grad()
    def ulgm_step(self, batch: Batch, output: ModelOutput, epoch: int) -> dict[str, float]:
        """ULGM after one training step of (1-based) ``epoch``: regenerate the batch's labels, store its features.

        Does nothing in eval mode or for a batch without one id per sample. Labels change only from
        ``update_start_epoch`` on, and only once the memory holds a full epoch of representations (the epoch after
        the memory was started: at once in a fresh run, one epoch late after ``--resume``). Returns the mean drift
        ``|y_s - y_m|`` per modality over the memory, for the log.
        """
        p = self.params
        assert isinstance(p, SelfMM.Params)
        if not self.training or len(batch.ids) != batch.size or batch.size == 0:
            return {}
        mem = self.memory
        if mem.first_epoch is None:
            mem.first_epoch = epoch
        y_m = batch.label.detach().float().cpu()
        rows = mem.rows(batch.ids, y_m)
        fused = output.diagnostics["repr_fusion"].float().cpu()  # F_m* [B, d_m] (detached by forward)
        # F_s* as [3, B, d]; contiguous, so each row's distance sums in one order whatever layout the heads gave
        uni_reps = output.diagnostics["repr_unimodal"].float().cpu().transpose(0, 1).contiguous()
        present = batch.present.detach().cpu().t()  # [3, B]: which rows each unimodal task stores / updates
        everywhere = bool(present.all())  # (the usual case: every modality of every sample)
        if epoch >= p.update_start_epoch and epoch > mem.first_epoch:
            fusion_centres = mem.fusion_centres()
            if fusion_centres is not None:
                alpha_m = relative_distance(fused, fusion_centres, p.distance)
                # the three unimodal tasks at once ([3, B]); a task whose class is empty keeps its labels
                pos, neg, defined = stacked_class_centres(mem.uni_features, mem.uni_labels, mem.uni_stored)
                alpha_s = relative_distance(uni_reps, (pos.unsqueeze(1), neg.unsqueeze(1)), p.distance)
                generated = shifted_label(mem.labels["fusion"][rows], alpha_m, alpha_s, p.label_bound)
                current = mem.uni_labels[:, rows]
                updated = momentum_update(current, generated, epoch)
                keep = defined.unsqueeze(1) if everywhere else present & defined.unsqueeze(1)
                mem.uni_labels[:, rows] = torch.where(keep, updated, current)
        mem.features["fusion"][rows] = fused
        mem.stored["fusion"].index_fill_(0, rows, True)
        if everywhere:
            mem.uni_features[:, rows] = uni_reps
            mem.uni_stored.index_fill_(1, rows, True)
        else:
            mem.uni_features[:, rows] = torch.where(present.unsqueeze(-1), uni_reps, mem.uni_features[:, rows])
            mem.uni_stored[:, rows] |= present
        drift = (mem.uni_labels - mem.labels["fusion"]).abs().mean(dim=1)
        return {f"ulgm_drift_{m}": d for m, d in zip(MODALITIES, drift.tolist(), strict=True)}

    def generated_labels(self) -> dict[str, np.ndarray]:
        """The memory as arrays: ``id``, ``label_multimodal`` and ``label_<m>`` per training sample seen."""
        mem = self.memory
        ids = sorted(mem.index, key=mem.index.__getitem__)
        return {"id": np.array(ids, dtype=str), "label_multimodal": mem.labels["fusion"].numpy().copy(),
                **{f"label_{m}": mem.labels[m].numpy().copy() for m in MODALITIES}}
