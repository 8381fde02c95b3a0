"""``accord sweep``: optuna studies on SQLite, N finished trials across restarts and workers, dead-worker recovery,
validation-only trials, space-file errors, the final re-run on several seeds."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from typer.testing import CliRunner

from accord.cli import app
from accord.config import apply_override
from accord.core.errors import ConfigError
from accord.studies.sweep import (
    SweepError,
    SweepOptions,
    _is_surplus,
    load_space,
    open_study,
    pid_alive,
    recover_dead_trials,
    run_sweep,
    study_attrs,
    yaml_literal,
)

pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")

TINY = ["data.params.n_train=48", "data.params.n_valid=24", "data.params.n_test=24", "train.epochs=2",
        "train.batch_size=16"]
SPACE = {"params": {"train.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
                    "model.params.dropout": {"type": "float", "low": 0.0, "high": 0.3}}}


def _opts(tmp_path: Path, trials: int, **kw: object) -> SweepOptions:
    space = tmp_path / "space.yaml"
    if not space.exists():
        space.write_text(yaml.safe_dump(SPACE))
    base: dict[str, object] = {
        "method": "early_fusion", "dataset": "conflictbench", "trials": trials,
        "storage": f"sqlite:///{tmp_path / 'db' / 'sweeps.db'}", "study": "s", "space": str(space),
        "overrides": [*TINY, f"output.dir={tmp_path / 'runs'}"], "final": False}
    base.update(kw)
    return SweepOptions(**base)  # type: ignore[arg-type]


def _load(opts: SweepOptions) -> optuna.Study:
    return optuna.load_study(study_name=opts.study_name, storage=opts.storage)


def _finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))


def test_n_trials_then_continue_without_and_with_room(tmp_path: Path) -> None:
    opts = _opts(tmp_path, trials=2)
    run_sweep(opts, log=lambda m: None)
    study = _load(opts)
    assert len(_finished(study)) == 2
    # every trial trained in <output.dir>/sweeps/<study>/trial_<n>, on VALIDATION only
    for t in _finished(study):
        rd = Path(t.user_attrs["run_dir"])
        assert rd == tmp_path / "runs" / "sweeps" / "s" / f"trial_{t.number}"
        res = json.loads((rd / "seed_0" / "results.json").read_text())
        assert "valid" in res and "test" not in res
        assert "test" not in json.loads((rd / "summary.json").read_text())
        assert t.value == pytest.approx(res["valid"]["MAE"]) == pytest.approx(t.user_attrs["valid"]["MAE"])
        assert not any(k.startswith("test") for k in t.user_attrs)
    # the same command again: nothing to do (N reached), no extra trial
    run_sweep(opts, log=lambda m: None)
    assert len(_load(opts).trials) == 2
    # a sweep stopped early (here: at 2 of 4) continues to N when run again with the same storage and study
    opts4 = _opts(tmp_path, trials=4)
    out = run_sweep(opts4, log=lambda m: None)
    study = _load(opts)
    assert len(_finished(study)) == 4 and len(study.trials) == 4
    assert [s["target"] for s in out["json"]["sessions"]] == [2, 2, 4]
    results = json.loads(out["path"].with_suffix(".json").read_text())
    assert results["study"]["counts"] == {"COMPLETE": 4}
    assert len(results["top"]) == 4 and results["best"]["number"] == study.best_trial.number
    assert all("test" not in (t["valid"] or {}) for t in results["top"])


def test_dead_running_trial_failed_and_requeued_with_same_params(tmp_path: Path) -> None:
    opts = _opts(tmp_path, trials=1)
    space, _ = load_space(opts.method, opts.space)
    study = open_study(opts, study_attrs(opts, space, "MAE", "min"))
    dist = {"train.lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True),
            "model.params.dropout": optuna.distributions.FloatDistribution(0.0, 0.3)}
    trial = study.ask(dist)
    proc = subprocess.Popen(["true"])
    proc.wait()
    assert not pid_alive(proc.pid)
    trial.set_user_attr("host", socket.gethostname())
    trial.set_user_attr("pid", proc.pid)
    alive = study.ask(dist)  # a RUNNING trial whose worker (this process) is alive is left alone
    alive.set_user_attr("host", socket.gethostname())
    alive.set_user_attr("pid", __import__("os").getpid())
    recovered = recover_dead_trials(study)
    assert [r["number"] for r in recovered] == [trial.number]
    trials = {t.number: t for t in study.get_trials()}
    assert trials[trial.number].state == TrialState.FAIL
    assert trials[alive.number].state == TrialState.RUNNING
    new = trials[recovered[0]["requeued_as"]]
    assert new.state == TrialState.WAITING and new.params == trial.params
    assert new.system_attrs["failed_trial"] == trial.number and "pid" not in new.user_attrs
    study.tell(alive, state=TrialState.FAIL)
    # the sweep picks the re-enqueued params up first
    run_sweep(opts, log=lambda m: None)
    done = _finished(_load(opts))
    assert len(done) == 1 and done[0].number == new.number and done[0].params == trial.params


def test_sweep_start_recovers_trials_of_a_killed_worker(tmp_path: Path) -> None:
    opts = _opts(tmp_path, trials=1)
    space, _ = load_space(opts.method, opts.space)
    study = open_study(opts, study_attrs(opts, space, "MAE", "min"))
    trial = study.ask({"train.lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True),
                       "model.params.dropout": optuna.distributions.FloatDistribution(0.0, 0.3)})
    proc = subprocess.Popen(["true"])
    proc.wait()
    trial.set_user_attr("host", socket.gethostname())
    trial.set_user_attr("pid", proc.pid)
    out = run_sweep(opts, log=lambda m: None)
    s = _load(opts)
    assert len(_finished(s)) == 1 and s.trials[trial.number].state == TrialState.FAIL
    assert _finished(s)[0].params == trial.params and _finished(s)[0].system_attrs["failed_trial"] == trial.number
    assert out["json"]["sessions"][0]["recovered"][0]["number"] == trial.number
    assert "re-enqueued" in out["markdown"]


@pytest.mark.slow
def test_two_workers_share_one_study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCORD_CORES", "2")  # final re-run: tuned + default in 2 processes
    opts = _opts(tmp_path, trials=3, workers=2, final=True, final_seeds=[0])
    out = run_sweep(opts, log=lambda m: None)
    assert "2 process(es) of 1 thread(s)" in out["markdown"]
    assert out["json"]["final"]["test"]["MAE"]["n"] == out["json"]["final"]["default"]["test"]["MAE"]["n"] == 1
    study = _load(opts)
    assert len(_finished(study)) == 3
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    assert {t.user_attrs["worker"] for t in _finished(study)} <= {0, 1}
    assert len({t.user_attrs["pid"] for t in _finished(study)}) >= 1
    assert study.user_attrs[next(k for k in study.user_attrs if k.startswith("session:"))]["workers"] == 2


def test_surplus_trial_beyond_n_is_detected() -> None:
    study = optuna.create_study()
    for v in (1.0, 2.0):
        study.add_trial(optuna.create_trial(value=v, params={}, distributions={}))
    first, second = study.ask(), study.ask()
    assert not _is_surplus(study, first, 3)  # 2 finished + itself = 3
    assert _is_surplus(study, second, 3)     # 2 finished + the earlier running one = 3 already
    assert not _is_surplus(study, second, 4)


def test_final_rerun_reports_test_mean_std_over_seeds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCORD_CORES", "1")  # in-process, one after the other (fast)
    opts = _opts(tmp_path, trials=1, final=True, final_seeds=[0, 1], out=str(tmp_path / "res" / "sweep.md"))
    out = run_sweep(opts, log=lambda m: None)
    md = (tmp_path / "res" / "sweep.md").read_text()
    js = json.loads((tmp_path / "res" / "sweep.json").read_text())
    best = js["best"]["number"]
    assert js["final"]["best_trial"] == best and js["final"]["seeds"] == [0, 1]
    assert js["final"]["test"]["Non0_acc_2"]["n"] == 2 and js["final"]["valid"]["MAE"]["n"] == 2
    assert js["final"]["default"]["test"]["Non0_acc_2"]["n"] == 2
    assert f"tuned (trial #{best}) test" in md and "untuned default test" in md and "±" in md
    assert "Top trials (1 best finished" in md and "`train.lr`" in md and "untuned default" in js["final"]["verdict"]
    assert out["path"] == tmp_path / "res" / "sweep.md"
    # the trivial-baseline rows (the tuned run's train mean, valid and test) and the dataset section
    const = js["final"]["constant_predictor"]
    assert const["test"]["MAE"]["mean"] > 0 and js["final"]["dataset_info"]["n"]["test"] > 0
    row = next(line for line in md.splitlines() if line.startswith("| constant predictor (train mean / majority "
                                                                   "class) test |"))
    assert f"{const['test']['MAE']['mean']:.3f} ± 0.000" in row and "### Dataset" in md
    trial_row = next(line for line in md.splitlines() if line.startswith("| constant predictor (train mean / "
                                                                         "majority class) | — |"))
    assert f"| {const['valid']['MAE']['mean']:.4f} |" in trial_row  # the same train mean on the same valid split
    # the final run is resumable: run again, nothing is retrained and the numbers stay
    again = run_sweep(opts, log=lambda m: None)
    assert again["json"]["final"]["test"] == js["final"]["test"]


def test_yaml_literal_round_trips_through_overrides() -> None:
    for v in (1e-05, 0.001, 3, 0.0, True, "conv", None, 2.5e-4):
        assert apply_override({}, f"a.b={yaml_literal(v)}")["a"]["b"] == v


@pytest.mark.parametrize(("text", "needle"), [
    ("params:\n  train.lr: {type: float, lo: 0.1, high: 1}\n",
     "params.train.lr.lo: unknown key for a search-space parameter; known: choices, high, log, low, step, type"),
    ("params:\n  train.lr: {type: categorical}\n", "params.train.lr: categorical needs a non-empty 'choices'"),
    ("params:\n  train.lr: {type: float, low: 0, high: 1, log: true}\n", "params.train.lr: log scale needs low > 0"),
    ("parms: {}\n", "parms: unknown key for a space file; known: description, params"),
    ("params: {}\n", "params: no parameters to search"),
    ("params:\n  train.lr: {type: int, low: 0.5, high: 3}\n", "params.train.lr: int needs integer bounds"),
    ("params:\n  train.lr: {type: gauss, low: 0, high: 1}\n", "params.train.lr.type"),
])
def test_space_file_errors_name_file_and_key(tmp_path: Path, text: str, needle: str) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_space("early_fusion", f)
    msg = str(err.value)
    assert str(f) in msg and needle in msg and "\n" not in msg


def test_shipped_spaces_are_valid() -> None:
    for method in ("cacr", "mult"):
        space, source = load_space(method)
        assert source.endswith(f"sweeps/{method}.yaml") and "train.lr" in space.params
    space, source = load_space("tfn")  # no file: the generic fallback
    assert source == "built-in default" and set(space.params) == {"train.lr", "train.weight_decay",
                                                                   "train.batch_size"}


runner = CliRunner()


def _cli(tmp_path: Path, *extra: str) -> list[str]:
    return ["sweep", "--method", "early_fusion", "--dataset", "conflictbench", "--trials", "1",
            "--storage", f"sqlite:///{tmp_path / 'x.db'}", "--no-final", *extra]


@pytest.mark.parametrize(("args", "needle"), [
    (["--trials", "0"], "--trials: needs at least 1 trial"),
    (["--storage", "nonsense.db"], "expected an SQLAlchemy URL"),
    (["--storage", "nosuchdialect://x/y"], "cannot open"),
    (["--method", "nosuch"], "unknown method 'nosuch'"),
    (["--workers", "0"], "--workers: needs at least 1"),
    (["--final-seeds", "a,b", "--final"], "--final-seeds"),
])
def test_cli_errors_are_one_line(tmp_path: Path, args: list[str], needle: str) -> None:
    res = runner.invoke(app, [*_cli(tmp_path), *args])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], res.output


def test_cli_bad_space_key_is_a_config_error(tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text("params:\n  model.params.dropotu: {type: float, low: 0, high: 0.5}\n")
    res = runner.invoke(app, [*_cli(tmp_path, "--space", str(space))])
    assert res.exit_code == 2 and "dropotu" in res.output and "Traceback" not in res.output, res.output
    assert not (tmp_path / "x.db").exists()  # checked before any storage is touched


def test_study_made_for_another_method_or_space_is_refused(tmp_path: Path) -> None:
    opts = _opts(tmp_path, trials=1)
    space, _ = load_space(opts.method, opts.space)
    open_study(opts, study_attrs(opts, space, "MAE", "min"))
    other = _opts(tmp_path, trials=1, method="late_fusion")
    with pytest.raises(SweepError, match="different method"):
        open_study(other, study_attrs(other, space, "MAE", "min"))
    smaller, _ = load_space("tfn")
    with pytest.raises(SweepError, match="different space"):
        open_study(opts, study_attrs(opts, smaller, "MAE", "min"))
    with pytest.raises(SweepError, match="optimises MINIMIZE"):
        open_study(opts, study_attrs(opts, space, "Non0_acc_2", "max"))
    open_study(_opts(tmp_path, trials=7), study_attrs(opts, space, "MAE", "min"))  # N may change
