"""The built-in models, datasets and trainer hooks by name, as a static table: what ``accord list`` prints
without importing the modules that register them (they import torch).

Each entry names where the registered object lives (``module:qualname``) and says in one line what it is.
``tests/test_startup.py`` imports every registry and checks that this table names exactly what is registered, at
the same place (and, for datasets, with the builder's own description): a model, dataset or hook added without
its line here fails that test.
"""

from __future__ import annotations

from typing import NamedTuple


class Entry(NamedTuple):
    """One registered name: where its class or builder lives (``module:qualname``) and what it is."""

    where: str
    description: str


MODELS: dict[str, Entry] = {
    "audio": Entry("accord.models.unimodal:Unimodal", "unimodal baseline on audio only"),
    "cacr": Entry("accord.models.cacr:CACR", "Conflict-Aware Adaptive Cross-Reconstruction"),
    "cpsl": Entry("accord.models.cpsl:CPSL", "text-query gated fusion with CP (hook) and SL (loss)"),
    "early_fusion": Entry("accord.models.early_fusion:EarlyFusion", "concatenated pooled features, one MLP"),
    "ebmc": Entry("accord.models.ebmc:EBMC", "Enhance-then-Balance Modality Collaboration"),
    "late_fusion": Entry("accord.models.late_fusion:LateFusion", "three unimodal branches, weighted average"),
    "lmf": Entry("accord.models.lmf:LMF", "Low-rank Multimodal Fusion (Liu et al., 2018)"),
    "misa": Entry("accord.models.misa:MISA", "shared/private representations (Hazarika et al., 2020)"),
    "mult": Entry("accord.models.mult:MulT", "Multimodal Transformer (Tsai et al., 2019)"),
    "self_mm": Entry("accord.models.self_mm:SelfMM", "Self-MM: unimodal tasks with generated labels (Yu et al., 2021)"),
    "text": Entry("accord.models.unimodal:Unimodal", "unimodal baseline on text only"),
    "tfn": Entry("accord.models.tfn:TFN", "Tensor Fusion Network (Zadeh et al., 2017)"),
    "unimodal": Entry("accord.models.unimodal:Unimodal", "unimodal baseline, modality chosen by model.params"),
    "visual": Entry("accord.models.unimodal:Unimodal", "unimodal baseline on visual only"),
}
"""Every built-in model (``accord.models``), aliases with fixed parameters included."""

DATASETS: dict[str, Entry] = {
    "conflictbench": Entry("accord.data.conflictbench:build_conflictbench",
                           "generated; text dominance and planted conflicts, deterministic by seed"),
    "mmsa": Entry("accord.data.mmsa:build_mmsa",
                  "an MMSA 2.x pickle (aligned_50.pkl / unaligned_50.pkl / unaligned_39.pkl of MOSI, MOSEI, CH-SIMS)"),
    "mosei-text": Entry("accord.data.mosei_text:build_mosei_text",
                        "CMU-MOSEI transcripts + scores on the standard folds, text only (path: label.csv or its "
                        "folder; default $ACCORD_DATA/mosei or ../shared/data/mosei)"),
    "mosi-u": Entry("accord.data.mosi_u:build_mosi_u",
                    "CMU-MOSI with bc-LSTM utterance features and real scores (path: the mosi folder; default "
                    "$ACCORD_DATA/mosi or ../shared/data/mosi)"),
    "saved": Entry("accord.data.safe:build_saved",
                   "a dataset directory in Accord's safe format (manifest.json + .npz), e.g. from "
                   "`accord data convert`"),
}
"""Every built-in dataset (``accord.data``); the descriptions are the builders' own."""

HOOKS: dict[str, Entry] = {
    "agm": Entry("accord.balance.agm:AGM", "AGM: rescale each modality's branch gradients"),
    "conflict_penalty": Entry("accord.balance.cp:ConflictPenalty", "CP's conflict penalty and gradient projection"),
    "grad_monitor": Entry("accord.balance.monitor:GradMonitor", "per-step gradient norms and imbalance ratios"),
    "ogm_ge": Entry("accord.balance.ogm_ge:OGMGE", "OGM-GE: slow the leading modality, add gradient noise"),
    "self_mm_ulgm": Entry("accord.balance.ulgm:ULGMHook", "Self-MM's unimodal label generation (ULGM)"),
}
"""Every built-in trainer hook (``accord.balance``)."""

BUILTIN: dict[str, dict[str, Entry]] = {"models": MODELS, "datasets": DATASETS, "hooks": HOOKS}
"""The three tables by the key :func:`accord.api.registered` returns them under."""
