"""accord.api.Predictor: a run loaded once that scores text alone, a clip, or a batch; the attribution keys of its
result; `accord predict --text` without a clip; `accord attribute` and its report section (issue 18).

MiniLM is replaced by a deterministic stand-in (:func:`fake_encode`), so nothing here needs the media extra.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from accord.cli import app
from accord.core.errors import CheckpointError, DataError
from accord.core.types import MODALITIES, Batch, ModelOutput
from accord.data.dataset import MultimodalDataset, make_split, standardize

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")

TEXT_DIM = 384


def fake_encode(texts: list[str], batch_size: int = 64, **options: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    """A deterministic stand-in for MiniLM: one 384-d step per word, the sentence vector their normalised mean;
    an empty text has length 0."""
    out = []
    for t in texts:
        words = t.split()
        if not words:
            out.append((np.zeros((0, TEXT_DIM), np.float32), np.zeros(TEXT_DIM, np.float32)))
            continue
        seq = np.stack([np.random.default_rng(sum(map(ord, w))).standard_normal(TEXT_DIM) for w in words])
        vec = seq.mean(axis=0)
        out.append((seq.astype(np.float32), (vec / np.linalg.norm(vec)).astype(np.float32)))
    return out


@pytest.fixture(autouse=True)
def _no_minilm(monkeypatch: pytest.MonkeyPatch) -> None:
    import accord.features.text

    monkeypatch.setattr(accord.features.text, "encode", fake_encode)


def text_only_extractor() -> dict[str, Any]:
    """``meta.extractor`` of a text-only dataset (what `accord data import` writes from a CSV)."""
    from accord.features.text import settings

    return {"version": 1, "level": "vector", "text": settings(), "audio": None, "visual": None}


WORDS = ["good", "bad", "great", "awful", "fine", "boring", "fun", "sad", "nice", "dull"]


def train_text_only(tmp_path: Path, method: str = "late_fusion", classes: int = 0, n: int = 16) -> Path:
    """Train one epoch on a text-only dataset saved like `accord data import` saves one (text vectors of the stand-in
    encoder, audio and visual absent everywhere, standardised, ``meta.extractor`` without audio/visual)."""
    import accord
    from accord import api
    from accord.data.safe import save_dataset

    g = torch.Generator().manual_seed(0)
    splits = {}
    for split in ("train", "valid", "test"):
        texts = [" ".join(WORDS[int(i)] for i in torch.randint(0, 10, (3,), generator=g)) for _ in range(n)]
        vecs = torch.from_numpy(np.stack([v for _, v in fake_encode(texts)])).unsqueeze(1)
        feats = {"text": vecs, "audio": torch.zeros(n, 1, 1), "visual": torch.zeros(n, 1, 1)}
        lengths = {"text": torch.ones(n, dtype=torch.long), "audio": torch.zeros(n, dtype=torch.long),
                   "visual": torch.zeros(n, dtype=torch.long)}
        y = torch.rand(n, generator=g) * 6 - 3
        extra: dict[str, Any] = {"raw_text": texts}
        if classes:
            extra["class_labels"] = torch.arange(n) % classes
        splits[split] = make_split(feats, y, lengths=lengths, id_prefix=f"{split}_", **extra)
    names = [f"c{k}" for k in range(classes)] if classes else []
    ds = MultimodalDataset("reviews", splits, class_names=names,
                           meta={"extractor": text_only_extractor(), "import": {"csv": "reviews.csv"}})
    standardize(ds)
    save_dataset(ds.validate(), tmp_path / "reviews_ds")
    over = ["data.name=saved", f"data.path={tmp_path / 'reviews_ds'}", "train.epochs=1", "train.seeds=[0]",
            f"output.dir={tmp_path}", "name=run", "train.num_threads=1"]
    if classes:
        over.append("task.kind=classification")
    api.train(accord.load_config(method=method, overrides=over))
    return tmp_path / "run"


def train_multimodal(tmp_path: Path, method: str = "late_fusion") -> Path:
    """Train one epoch on random vector-level features of the clip extractor's dims (text 384, audio 88, visual
    35) with ``meta.extractor`` = the installed extractor's settings."""
    from accord.features.extract import extractor_settings
    from test_features import _saved_run

    return _saved_run(tmp_path, {"text": 384, "audio": 88, "visual": 35}, extractor_settings(), method=method)


@pytest.fixture(scope="module")
def text_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import accord.features.text

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(accord.features.text, "encode", fake_encode)
        return train_text_only(tmp_path_factory.mktemp("text"))


def _by_hand(run: Path, text: str) -> tuple[float, float]:
    """The model's score of ``text`` and of nothing at all, from a batch made here: the stand-in's vector,
    standardised with the manifest's statistics."""
    from accord.api import load

    meta = json.loads((run.parent / "reviews_ds" / "manifest.json").read_text())["meta"]
    st = meta["standardize"]["text"]
    x = (fake_encode([text])[0][1] - np.asarray(st["mean"], np.float32)) / np.asarray(st["std"], np.float32)
    model = load(run)
    scores = []
    for has_text in (True, False):
        feats = {"text": torch.from_numpy(x).view(1, 1, -1) * has_text, "audio": torch.zeros(1, 1, 1),
                 "visual": torch.zeros(1, 1, 1)}
        masks = {"text": torch.tensor([[has_text]]), "audio": torch.zeros(1, 1, dtype=torch.bool),
                 "visual": torch.zeros(1, 1, dtype=torch.bool)}
        present = torch.tensor([[has_text, False, False]])
        with torch.no_grad():
            out = model(Batch(features=feats, mask=masks, present=present, label=torch.zeros(1)))
        scores.append(float(out.prediction[0]))
    return scores[0], scores[1]


def test_text_only_run_scores_text_alone(text_run: Path) -> None:
    from accord.api import Predictor

    p = Predictor(text_run)
    res = p.predict(text="great fun")
    assert res["clip"] is None and res["transcript"] == "great fun" and res["method"] == "late_fusion"
    # the model never had audio or visual (a text-only dataset): said, but the prediction is not "degraded"
    assert res["modalities"]["text"] == "used" and res["degraded"] == []
    assert res["modalities"]["audio"] == res["modalities"]["visual"] == \
        "not used: absent from all of the model's training data"
    score, empty = _by_hand(text_run, "great fun")
    assert res["score"] == pytest.approx(score, abs=1e-4)
    # Shapley: only text is present, so φ_text = v({text}) − v(∅) and audio, visual are exactly 0
    assert res["attribution"] == {"text": pytest.approx(score - empty, abs=1e-5), "audio": 0.0, "visual": 0.0}
    assert res["base"] == pytest.approx(empty, abs=1e-5)
    assert res["disagree"] is False
    # late fusion has unimodal heads: a conflict needs two present modalities
    assert res["conflict"] is False and res["conflict_detail"]["by"] == "unimodal_heads"
    assert set(res["seconds"]) == {"load_model", "text", "audio", "visual", "model", "total"}
    # nothing to score: an empty text is a one-line DataError naming what is missing
    with pytest.raises(DataError, match="text: no modality the model can use .*empty transcript"):
        p.predict(text="   ")


def test_predictor_loads_once_and_batches_in_one_forward(text_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import accord.api.media
    import accord.features.text
    from accord.api import Predictor

    loads: list[Path] = []
    real_load = accord.api.media.load
    monkeypatch.setattr(accord.api.media, "load", lambda *a, **k: loads.append(a[0]) or real_load(*a, **k))
    p = Predictor(text_run)
    encoded: list[int] = []
    options: list[dict[str, Any]] = []
    monkeypatch.setattr(accord.features.text, "encode",
                        lambda texts, **kw: encoded.append(len(texts)) or options.append(kw) or fake_encode(texts))
    forwards: list[int] = []
    p.model.register_forward_pre_hook(lambda mod, args: forwards.append(args[0].size))
    texts = ["good fun", "awful dull boring", "nice"]
    one_by_one = [p.predict(text=t) for t in texts]
    batch = p.predict_batch([texts[0], {"text": texts[1]}, {"text": texts[2], "clip": None}])
    assert len(loads) == 1  # the checkpoint was read once for four calls
    assert encoded == [1, 1, 1, 3] and forwards == [8, 8, 8, 24]  # 8 coalitions x B rows, one forward per call
    assert all(kw == {"cache": False, "progress": False} for kw in options)  # no disk cache entry per request
    for a, b in zip(one_by_one, batch, strict=True):
        assert b["score"] == pytest.approx(a["score"], abs=1e-5)
        assert b["attribution"] == pytest.approx(a["attribution"], abs=1e-5)
    with pytest.raises(DataError, match="item 0: expected a text and/or a clip"):
        p.predict_batch([{}])
    with pytest.raises(DataError, match="no items"):
        p.predict_batch([])


def test_classification_attributes_the_predicted_class(tmp_path: Path) -> None:
    from accord.api import Predictor, attribution

    run = train_text_only(tmp_path, "ebmc", classes=3)
    res = Predictor(run).predict(text="boring sad")
    probs = res["probabilities"]
    assert set(probs) == {"c0", "c1", "c2"} and sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
    cls = res["class"]
    assert cls == max(probs, key=probs.get)
    # Σ φ of the predicted class = its probability − its probability with nothing present
    assert sum(res["attribution"].values()) == pytest.approx(probs[cls] - res["base"], abs=1e-5)
    assert res["base"] == pytest.approx(res["base_probabilities"][cls])
    per_class = res["attribution_per_class"]["text"]
    assert per_class[cls] == res["attribution"]["text"]
    assert sum(per_class.values()) == pytest.approx(0.0, abs=1e-5)  # probabilities move between classes
    # the split's attribution of a classifier: φ of each sample's predicted class
    split = attribution(run, write=False)
    assert split["task"] == "classification" and split["n"] == 16 and "saved" not in split
    assert split["mean_abs_phi"]["text"] > 0 and split["mean_abs_phi"]["audio"] == 0.0


def test_multimodal_run_given_only_text_is_degraded(tmp_path: Path) -> None:
    from accord.api import Predictor

    res = Predictor(train_multimodal(tmp_path, "ebmc")).predict(text="it was nice")
    assert res["clip"] is None and res["degraded"] == ["audio", "visual"]
    assert res["modalities"] == {"text": "used", "audio": "missing: no clip given (text only)",
                                 "visual": "missing: no clip given (text only)"}
    assert res["attribution"]["audio"] == 0.0 and res["attribution"]["visual"] == 0.0
    assert res["score"] == pytest.approx(res["base"] + res["attribution"]["text"], abs=2e-4)
    assert res["diagnostics"]["trust_text"] == pytest.approx(1.0, abs=1e-4)  # EBMC trusts the only modality


def test_run_without_extractor_settings_names_the_way_forward(tmp_path: Path) -> None:
    from accord.api import Predictor
    from test_features import _saved_run

    run = _saved_run(tmp_path, {"text": 384, "audio": 88, "visual": 35}, None, method="text")
    with pytest.raises(CheckpointError, match="no extractor settings.*`accord data import`.*`accord extract`"):
        Predictor(run)


def test_cli_predict_text_without_a_clip(text_run: Path) -> None:
    res = runner.invoke(app, ["predict", "--model", str(text_run), "--text", "great fun", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["clip"] is None and out["degraded"] == [] and "attribution" in out
    res = runner.invoke(app, ["predict", "--model", str(text_run), "--text", "great fun"])
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("(text only): score ") and "attribution (Shapley): text " in res.stdout
    res = runner.invoke(app, ["predict", "--model", str(text_run)])
    assert res.exit_code == 2 and "give a clip (an audio or video file) and/or --text" in res.stderr


def test_attribute_writes_the_split_summary_and_the_report_shows_it(text_run: Path) -> None:
    from accord.api import Predictor

    res = runner.invoke(app, ["attribute", str(text_run)])
    assert res.exit_code == 0, res.output
    saved = json.loads((text_run / "attribution_test.json").read_text())
    assert saved["n"] == 16 and saved["method"] == "late_fusion" and list(saved["per_seed"]) == ["seed_0"]
    assert saved["mean_abs_phi"]["audio"] == 0.0 and saved["mean_abs_phi"]["visual"] == 0.0
    assert saved["present_share"] == {"text": 1.0, "audio": 0.0, "visual": 0.0}
    assert saved["disagree_share"] == 0.0  # one modality cannot disagree with itself
    # by hand: mean over the test texts of |v({text}) − v(∅)|
    meta = json.loads((text_run.parent / "reviews_ds" / "manifest.json").read_text())
    assert meta["splits"]["test"]["n"] == 16
    from accord.data.safe import load_dataset_dir

    test = load_dataset_dir(text_run.parent / "reviews_ds")["test"]
    p = Predictor(text_run)
    hand = np.mean([abs(sum(p.predict(text=t)["attribution"].values())) for t in test.raw_text])
    assert saved["mean_abs_phi"]["text"] == pytest.approx(hand, abs=1e-4)
    assert "mean |phi|" in res.stdout and f"wrote {text_run / 'attribution_test.json'}" in res.stderr
    from accord.evaluation.report import build_report

    page = build_report(text_run)
    assert "Shapley attribution" in page and f"{saved['mean_abs_phi']['text']:.3f}" in page


def _row(diag: dict[str, float], heads: dict[str, Any] | None = None) -> ModelOutput:
    return ModelOutput(prediction=torch.zeros(1), diagnostics={k: torch.tensor([v]) for k, v in diag.items()},
                       aux_predictions={k: torch.tensor(v).view(1, -1) for k, v in (heads or {}).items()})


def test_conflict_flag_from_conflict_scores_and_unimodal_heads() -> None:
    from accord.features.predict import conflict_result

    both = torch.tensor([True, True, False])
    c = conflict_result(_row({f"conflict_{m}": v for m, v in zip(MODALITIES, (0.5, 1.2, 0.0), strict=True)}),
                        both, "regression")
    assert c == {"flag": True, "by": "conflict_scores", "score": 1.2, "threshold": 1.0,
                 "scores": {"text": 0.5, "audio": 1.2}}
    c = conflict_result(_row({f"conflict_{m}": v for m, v in zip(MODALITIES, (0.9, 1.0, 3.0), strict=True)}),
                        both, "regression")
    assert c is not None and c["flag"] is False and c["score"] == 1.0  # visual (absent) is not counted; 1.0 is not > 1
    heads = {"unimodal_text": [0.5], "unimodal_audio": [-0.2], "unimodal_visual": [9.0]}
    c = conflict_result(_row({}, heads), both, "regression")
    assert c == {"flag": True, "by": "unimodal_heads", "unimodal": {"text": 0.5, "audio": -0.2}}
    heads = {"unimodal_text": [0.1, 2.0], "unimodal_audio": [0.0, 1.0], "unimodal_visual": [5.0, 0.0]}
    c = conflict_result(_row({}, heads), both, "classification", ["neg", "pos"])
    assert c == {"flag": False, "by": "unimodal_heads", "unimodal": {"text": "pos", "audio": "pos"}}
    assert conflict_result(_row({"gain": 1.0}), both, "regression") is None  # no conflict diagnostic (e.g. MulT)


BERT_WORDS = ["good", "great", "fine", "bad", "awful", "dull", "movie", "plot"]


def test_a_pretrained_text_branch_gets_the_transcript_tokens(tmp_path: Path) -> None:
    """A run whose text branch is a pretrained transformer (here a 2-layer BERT with its own tokenizer) is fed the
    transcript's tokens, as the trainer tokenizes raw text: the score is that of a batch built by hand with
    tokenize_texts."""
    transformers = pytest.importorskip("transformers", reason="the pretrained text branch needs transformers")
    import inspect

    import accord
    from accord import api
    from accord.api import Predictor
    from accord.data.safe import save_dataset
    from accord.data.tokens import tokenize_texts

    bert = tmp_path / "bert"  # a 2-layer BERT and its WordPiece tokenizer (as test_text_encoder builds one)
    bert.mkdir()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *BERT_WORDS]
    (bert / "vocab.txt").write_text("\n".join(vocab) + "\n")
    takes_vocab = "vocab" in inspect.signature(transformers.BertTokenizerFast.__init__).parameters
    transformers.BertTokenizerFast(**({"vocab": {w: i for i, w in enumerate(vocab)}} if takes_vocab
                                      else {"vocab_file": str(bert / "vocab.txt")})).save_pretrained(bert)
    torch.manual_seed(0)
    transformers.BertModel(transformers.BertConfig(
        vocab_size=len(vocab), hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=64, type_vocab_size=2)).save_pretrained(bert)
    g = torch.Generator().manual_seed(0)
    splits = {}
    for split in ("train", "valid", "test"):
        texts = [" ".join(BERT_WORDS[int(i)] for i in torch.randint(0, len(BERT_WORDS), (3,), generator=g))
                 for _ in range(8)]
        vecs = torch.from_numpy(np.stack([v for _, v in fake_encode(texts)])).unsqueeze(1)
        feats = {"text": vecs, "audio": torch.zeros(8, 1, 1), "visual": torch.zeros(8, 1, 1)}
        lengths = {"text": torch.ones(8, dtype=torch.long), "audio": torch.zeros(8, dtype=torch.long),
                   "visual": torch.zeros(8, dtype=torch.long)}
        splits[split] = make_split(feats, torch.rand(8, generator=g) * 6 - 3, lengths=lengths, id_prefix=split,
                                   raw_text=texts)
    save_dataset(MultimodalDataset("words", splits, meta={"extractor": text_only_extractor()}).validate(),
                 tmp_path / "ds")
    api.train(accord.load_config(method="late_fusion", overrides=[
        "data.name=saved", f"data.path={tmp_path / 'ds'}", "train.epochs=1", "train.seeds=[0]",
        f"output.dir={tmp_path}", "name=run", "train.num_threads=1", "model.params.text_encoder.source=pretrained",
        f"model.params.text_encoder.path={bert}"]))
    text = f"{BERT_WORDS[0]} {BERT_WORDS[4]}"
    res = Predictor(tmp_path / "run").predict(text=text)
    model = api.load(tmp_path / "run")
    vec = torch.from_numpy(fake_encode([text])[0][1]).view(1, 1, -1)
    batch = Batch(features={"text": vec, "audio": torch.zeros(1, 1, 1), "visual": torch.zeros(1, 1, 1)},
                  mask={"text": torch.ones(1, 1, dtype=torch.bool), "audio": torch.zeros(1, 1, dtype=torch.bool),
                        "visual": torch.zeros(1, 1, dtype=torch.bool)},
                  present=torch.tensor([[True, False, False]]), label=torch.zeros(1),
                  text_tokens=tokenize_texts([text], bert, 50))
    with torch.no_grad():
        assert res["score"] == pytest.approx(float(model(batch).prediction[0]), abs=1e-4)
    assert res["score"] == pytest.approx(res["base"] + res["attribution"]["text"], abs=2e-4)
