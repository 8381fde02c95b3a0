"""The in-memory data contract: :class:`SplitData`, :class:`MultimodalDataset` and batching.

Every loader (MMSA pickle, MOSI-U, ConflictBench, the safe on-disk format) produces a ``MultimodalDataset``;
models and the trainer only ever see :class:`accord.core.types.Batch` objects made from it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from accord.core.errors import DataError
from accord.core.types import MODALITIES, Batch
from accord.data.contract import SPLITS, check_ids, check_text_tokens, split_dims, summarize, validate_splits

__all__ = ["BUCKET_CHUNK", "SPLITS", "MetricFamily", "MultimodalDataset", "SplitData", "check_text_tokens",
           "make_split", "standardize"]

MetricFamily = Literal["mosi", "sims"]
#: Chunk size of length bucketing, in batches (:meth:`SplitData.bucket_order`).
BUCKET_CHUNK = 50


@dataclass
class SplitData:
    """One split: padded features ``[N, T_m, D_m]``, lengths ``[N]``, labels and per-sample metadata.

    Attributes:
        features: modality -> float32 ``[N, T_m, D_m]``; steps at or past ``lengths[m][i]`` are zero.
        lengths: modality -> long ``[N]`` with 0 < length <= T_m (0 marks a missing modality).
        labels: float32 ``[N]`` regression scores.
        class_labels: optional long ``[N]`` class indices (for ``task.kind = classification``).
        unimodal_labels: optional modality -> float32 ``[N]`` (CH-SIMS ``regression_labels_T/A/V``).
        ids: ``N`` sample ids.
        raw_text: ``N`` transcripts ('' where unknown).
        extras: optional per-sample tensors ``[N, ...]`` (ConflictBench ground truth, ...).
        text_tokens: optional long ``[N, 3, L]`` transcript tokens for a pretrained text encoder in MMSA's
            ``text_bert`` layout: row 0 the token ids, row 1 the attention mask (1 = real token, right-padded),
            row 2 the segment ids. :meth:`batch` trims them to the longest real token count of the batch.
    """

    features: dict[str, Tensor]
    lengths: dict[str, Tensor]
    labels: Tensor
    ids: list[str]
    raw_text: list[str] = field(default_factory=list)
    class_labels: Tensor | None = None
    unimodal_labels: dict[str, Tensor] = field(default_factory=dict)
    extras: dict[str, Tensor] = field(default_factory=dict)
    text_tokens: Tensor | None = None
    #: the lengths tensors (with their versions and padded lengths) and the masks and ``present`` built from them
    _row_cache: tuple[list[tuple[Tensor, int, int]], dict[str, Tensor], Tensor] | None = field(
        default=None, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def dims(self) -> dict[str, int]:
        """Feature dimension per modality."""
        return split_dims(self)

    def seq_lens(self) -> dict[str, int]:
        """Padded sequence length per modality."""
        return {m: int(self.features[m].shape[1]) for m in MODALITIES}

    def subset(self, index: Tensor | list[int]) -> SplitData:
        """Rows ``index`` of this split (a new object; tensors are indexed, not shared)."""
        idx = torch.as_tensor(index, dtype=torch.long)
        pos = idx.tolist()
        return SplitData(
            features={m: v[idx] for m, v in self.features.items()},
            lengths={m: v[idx] for m, v in self.lengths.items()},
            labels=self.labels[idx],
            ids=[self.ids[i] for i in pos],
            raw_text=[self.raw_text[i] for i in pos] if self.raw_text else [],
            class_labels=None if self.class_labels is None else self.class_labels[idx],
            unimodal_labels={m: v[idx] for m, v in self.unimodal_labels.items()},
            extras={k: v[idx] for k, v in self.extras.items()},
            text_tokens=None if self.text_tokens is None else self.text_tokens[idx],
        )

    def batch(self, index: Tensor, task: str = "regression", trim: bool = True) -> Batch:
        """Assemble rows ``index`` into a :class:`Batch`.

        ``trim`` cuts each modality's padding to the longest real sequence in the batch (fewer wasted steps for
        sequence models) and the text tokens to the longest real token count (dynamic padding, at least one
        column). For ``task == "classification"`` the label is ``class_labels``.
        """
        feats: dict[str, Tensor] = {}
        masks: dict[str, Tensor] = {}
        full_masks, full_present = self._rows()
        for m in MODALITIES:
            x = self.features[m][index]
            mask = full_masks[m][index]
            if trim and x.shape[1] > 1:
                lens = self.lengths[m][index]
                t_max = max(int(lens.max().item()), 1) if len(lens) else 1
                if t_max < x.shape[1]:  # a copy, not a strided view: a compiled model would recompile per length
                    x = x[:, :t_max].contiguous()
                    mask = mask[:, :t_max].contiguous()
            feats[m] = x
            masks[m] = mask
        present = full_present[index]
        if task == "classification":
            if self.class_labels is None:
                raise DataError("task.kind is 'classification' but this dataset has no class labels")
            label = self.class_labels[index]
        else:
            label = self.labels[index]
        return Batch(
            features=feats,
            mask=masks,
            present=present,
            label=label,
            unimodal_labels={m: v[index] for m, v in self.unimodal_labels.items()},
            ids=[self.ids[i] for i in index.tolist()],
            extras={k: v[index] for k, v in self.extras.items()},
            text_tokens=self._batch_tokens(index, trim),
        )

    def _rows(self) -> tuple[dict[str, Tensor], Tensor]:
        """Every row's step mask per modality (``[N, T_m]``, ``step < length``) and ``present`` (``[N, 3]``,
        ``length > 0``), built once from :attr:`lengths` (again when a lengths tensor is replaced or changed in
        place), so that :meth:`batch` gathers its rows of them instead of computing them per batch: the same values
        in fewer operations."""
        key = [(self.lengths[m], self.lengths[m]._version, int(self.features[m].shape[1])) for m in MODALITIES]
        hit = self._row_cache
        if hit is not None and all(a is b and va == vb and ta == tb
                                   for (a, va, ta), (b, vb, tb) in zip(hit[0], key, strict=True)):
            return hit[1], hit[2]
        masks = {m: torch.arange(t).unsqueeze(0) < lens.unsqueeze(1) for m, (lens, _, t) in zip(MODALITIES, key,
                                                                                               strict=True)}
        present = torch.stack([self.lengths[m] > 0 for m in MODALITIES], dim=1)
        self._row_cache = (key, masks, present)
        return masks, present

    def _batch_tokens(self, index: Tensor, trim: bool) -> Tensor | None:
        """Rows ``index`` of :attr:`text_tokens` as long ``[B, 3, L]``; with ``trim``, ``L`` is the longest
        attention-mask sum of those rows (at least 1); without, the longest of the whole split (fixed padding).
        ``None`` without tokens."""
        if self.text_tokens is None:
            return None
        rows = self.text_tokens[index] if trim else self.text_tokens
        longest = int(rows[:, 1].long().sum(dim=1).max().item()) if len(rows) else 1
        return self.text_tokens[index].long()[:, :, : max(longest, 1)].contiguous()

    def token_counts(self) -> Tensor:
        """Real token count per row ``[N]``: the attention-mask sums of :attr:`text_tokens`, or the text
        lengths when there are no tokens."""
        if self.text_tokens is None:
            return self.lengths["text"].long()
        return self.text_tokens[:, 1].long().sum(dim=1)

    def iter_batches(
        self,
        batch_size: int,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        task: str = "regression",
        drop_last: bool = False,
        bucket: bool = False,
        trim: bool = True,
    ) -> Iterator[Batch]:
        """Yield batches over the split, shuffled with ``generator`` when ``shuffle`` is True.

        ``bucket`` (with ``shuffle`` only; ignored otherwise) groups rows of similar token length into the same
        batch, so dynamic padding wastes less (:meth:`bucket_order`). Without it the order is one
        ``randperm`` of the rows, exactly as always. ``trim``: dynamic padding (:meth:`batch`).
        """
        if bucket and shuffle:
            for index in self.bucket_order(batch_size, generator, drop_last):
                yield self.batch(index, task=task, trim=trim)
            return
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        stop = (n // batch_size) * batch_size if drop_last and n >= batch_size else n
        for start in range(0, stop, batch_size):
            yield self.batch(order[start : start + batch_size], task=task, trim=trim)

    def bucket_order(
        self, batch_size: int, generator: torch.Generator | None = None, drop_last: bool = False
    ) -> list[Tensor]:
        """Length-bucketed batches of row indices for one epoch (every row once; seeded = deterministic).

        The rows are shuffled with ``generator``, cut into chunks of ``batch_size * BUCKET_CHUNK`` rows, each
        chunk is sorted (stably) by real token count (:meth:`token_counts`) and cut into batches, and the batch
        order is shuffled with the same generator. Only the last batch can be short; ``drop_last`` drops it.
        """
        n = len(self)
        order = torch.randperm(n, generator=generator)
        counts = self.token_counts()
        chunk = batch_size * BUCKET_CHUNK
        pieces = []
        for start in range(0, n, chunk):
            rows = order[start : start + chunk]
            pieces.append(rows[torch.sort(counts[rows], stable=True).indices])
        sorted_rows = torch.cat(pieces) if pieces else order
        batches = [sorted_rows[start : start + batch_size] for start in range(0, n, batch_size)]
        if drop_last and batches and len(batches[-1]) < batch_size and n >= batch_size:
            batches.pop()
        return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]

    def num_batches(self, batch_size: int) -> int:
        return math.ceil(len(self) / batch_size)


@dataclass
class MultimodalDataset:
    """A named dataset with ``train``/``valid``/``test`` splits and the metadata models and metrics need.

    Attributes:
        name: dataset name (shown in tables).
        splits: split name -> :class:`SplitData`.
        metric_family: which regression metric set applies: ``"mosi"`` (MOSI/MOSEI, labels in [-3, 3]) or
            ``"sims"`` (CH-SIMS, labels in [-1, 1]).
        label_range: inclusive bounds of the regression labels; loaders reject labels outside it.
        class_names: names of the class labels, when the dataset has them.
        source: the file or generator it came from (used in error messages).
        meta: free-form provenance (generator parameters, split seeds, feature extractor names).
    """

    name: str
    splits: dict[str, SplitData]
    metric_family: MetricFamily = "mosi"
    label_range: tuple[float, float] = (-3.0, 3.0)
    class_names: list[str] = field(default_factory=list)
    source: str = "<memory>"
    meta: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, split: str) -> SplitData:
        try:
            return self.splits[split]
        except KeyError:
            raise DataError(f"{self.source}: no split {split!r}; has {sorted(self.splits)}") from None

    @property
    def dims(self) -> dict[str, int]:
        return self.splits["train"].dims()

    def validate(self) -> MultimodalDataset:
        """Check the whole data contract; raise a one-line :class:`DataError` naming the source and problem
        (:func:`accord.data.contract.validate_splits` says what is checked). Returns the dataset."""
        validate_splits(self.splits, self.source, self.label_range, self.class_names)
        return self

    def check_ids(self) -> MultimodalDataset:
        """Every sample id unique across the whole dataset (all splits together), as strings; else a one-line
        :class:`DataError` naming the source, the first duplicate ids with their splits and how many there are.

        Per-sample state is keyed by id (Self-MM's label memory, QASA's source rows, saved predictions), so two
        samples sharing an id would be merged, and an id in two splits is a leak between them.
        """
        check_ids(self.splits, self.source)
        return self

    def summary(self) -> dict[str, Any]:
        """Per-split counts, shapes and label statistics (what ``accord data info`` prints)."""
        return summarize(self.splits, self.name, self.source, self.metric_family, self.class_names)


def make_split(
    features: dict[str, Tensor],
    labels: Tensor,
    ids: list[str] | None = None,
    lengths: dict[str, Tensor] | None = None,
    id_prefix: str = "",
    **kwargs: Any,
) -> SplitData:
    """Build a :class:`SplitData`, defaulting lengths to full length and ids to ``f"{id_prefix}{i}"`` for
    ``i = 0..N-1``. Ids must be unique across a dataset's splits (:meth:`MultimodalDataset.check_ids`), so give each
    split its own ``id_prefix`` (e.g. ``"train_"``) or its own ``ids``."""
    n = int(labels.shape[0])
    if lengths is None:
        lengths = {m: torch.full((n,), features[m].shape[1], dtype=torch.long) for m in MODALITIES}
    return SplitData(
        features={m: features[m].float() for m in MODALITIES},
        lengths={m: lengths[m].long() for m in MODALITIES},
        labels=labels.float(),
        ids=ids if ids is not None else [f"{id_prefix}{i}" for i in range(n)],
        **kwargs,
    )


def standardize(ds: MultimodalDataset, eps: float = 1e-6) -> MultimodalDataset:
    """Z-score every feature column with train-split statistics over real (unpadded) steps, in place.

    Constant columns (std < eps) are centred but not scaled, so they become zeros instead of NaN. Padding stays
    zero. The statistics are stored in ``ds.meta["standardize"]`` for use at prediction time.
    """
    stats: dict[str, dict[str, list[float]]] = {}
    train = ds.splits["train"]
    for m in MODALITIES:
        x, lens = train.features[m], train.lengths[m]
        mask = (torch.arange(x.shape[1]).unsqueeze(0) < lens.unsqueeze(1)).unsqueeze(-1)
        count = mask.sum().clamp_min(1)
        mean = (x * mask).sum(dim=(0, 1)) / count
        var = (((x - mean) * mask) ** 2).sum(dim=(0, 1)) / count
        std = var.sqrt()
        std = torch.where(std < eps, torch.ones_like(std), std)
        stats[m] = {"mean": mean.tolist(), "std": std.tolist()}
        for part in ds.splits.values():
            xs, ls = part.features[m], part.lengths[m]
            pm = (torch.arange(xs.shape[1]).unsqueeze(0) < ls.unsqueeze(1)).unsqueeze(-1)
            part.features[m] = ((xs - mean) / std) * pm
    ds.meta["standardize"] = stats
    return ds
