"""Adding a real dataset needs no Python: a credit-default table with a ``Yes``/``No`` target, a
text time column and a second file without any date goes through ``mlcycle ingest`` →
``mlcycle contract suggest --write`` → ``mlcycle check`` → the training steps, and ends as a
registered, promoted model with holdout metrics. Each mistake a newcomer makes is refused with
a message that names it and the fix."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from mlcycle.cli import main
from mlcycle.core.errors import SpecError
from mlcycle.core.run import RunInfo
from mlcycle.core.spec import get_spec
from mlcycle.data import lake as lk
from mlcycle.flows import train as steps
from mlcycle.store import registry
from tests.conftest import today

if TYPE_CHECKING:
    from tests.conftest import Env

# MLflow's own deprecation and hint warnings are not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:::mlflow.*")

MODEL = "credit"
DAYS = 30
ROWS = 3000
# What a newcomer writes, following the README: the labels quoted, since YAML reads a bare
# Yes/No as a boolean.
SPEC = """\
name: credit
description: Predicts which loan applicants default within a year.
task: classification
contract: credit.json
data:
  key_column: application_id
  time_column: applied_at
  target: default
  labels: {"No": 0, "Yes": 1}
  training_window_days: 60
features:
  numeric: [income, loan_amount, age]
  categorical: [employment, home]
estimator:
  class: sklearn.ensemble.HistGradientBoostingClassifier
  params:
    max_iter: 40
    learning_rate: 0.1
    random_state: 0
gate:
  primary_metric: roc_auc
  thresholds:
    roc_auc: {min: 0.6}
"""


def credit_table(
    rows: int = ROWS, *, days: int = DAYS, end: dt.date | None = None, seed: int = 0
) -> pd.DataFrame:
    """Loan applications over ``days`` days ending ``end`` (default yesterday), as an export gives
    them: ISO text timestamps with a +01:00 offset, a Yes/No target, some missing incomes."""
    rng = np.random.default_rng(seed)
    end = end or today() - dt.timedelta(days=1)
    start = dt.datetime.combine(end - dt.timedelta(days=days - 1), dt.time(), tzinfo=dt.UTC)
    # Minutes after the first midnight, 01:00 to 22:59 UTC so every row's UTC day is its local day.
    minutes = rng.integers(0, days, rows) * 1440 + rng.integers(60, 1380, rows)
    local = dt.timezone(dt.timedelta(hours=1))
    applied = [(start + dt.timedelta(minutes=int(m))).astimezone(local).isoformat() for m in minutes]
    income = rng.lognormal(10.5, 0.5, rows).round(0)
    loan = rng.uniform(1_000, 40_000, rows).round(0)
    age = rng.integers(19, 80, rows)
    employment = rng.choice(
        ["salaried", "self-employed", "unemployed", "retired"], rows, p=[0.6, 0.2, 0.1, 0.1]
    )
    home = rng.choice(["rent", "own", "mortgage"], rows)
    logit = -1.0 + 2.5 * loan / income - 0.02 * (age - 45) + 1.2 * (employment == "unemployed")
    default = np.where(rng.random(rows) < 1 / (1 + np.exp(-logit)), "Yes", "No")
    income[rng.random(rows) < 0.03] = np.nan
    return pd.DataFrame(
        {
            "application_id": [f"A{seed}{i:07d}" for i in range(rows)],
            "applied_at": applied,
            "income": income,
            "loan_amount": loan,
            "age": age,
            "employment": employment,
            "home": home,
            "default": default,
        }
    )


@pytest.fixture
def onboard(env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    """A project holding only the credit spec and no contract yet, with its own lake and stores."""
    specs, contracts = tmp_path / "models", tmp_path / "contracts"
    specs.mkdir()
    contracts.mkdir()
    (specs / f"{MODEL}.yaml").write_text(SPEC)
    monkeypatch.setenv("MLCYCLE_SPECS_DIR", str(specs))
    monkeypatch.setenv("MLCYCLE_CONTRACTS_DIR", str(contracts))
    return env


@pytest.fixture(autouse=True)
def _one_thread():
    """Fit on one thread: the data is tiny and thread start-up would dominate."""
    with threadpool_limits(limits=1):
        yield


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """Run ``mlcycle argv``: (exit code, what it printed on stdout and stderr)."""
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out + out.err


def incoming(env: Env) -> dict[str, bytes]:
    """The model's incoming batches: file name -> bytes."""
    folder = Path(env.lake) / MODEL / "incoming"
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.parquet"))} if folder.exists() else {}


def test_credit_table_onboards_without_python(onboard: Env, tmp_path: Path, capsys):
    """ingest → contract suggest --write → check → train/evaluate/gate/promote: a champion with metrics."""
    table = credit_table()
    csv = tmp_path / "credit.csv"
    table.to_csv(csv, index=False)
    code, out = cli(capsys, "ingest", MODEL, str(csv))
    assert code == 0, out
    assert f"{MODEL}: {ROWS} rows of {csv} in {DAYS} daily batch(es):" in out
    batches = incoming(onboard)
    first = today() - dt.timedelta(days=DAYS)
    assert list(batches) == [f"{first + dt.timedelta(days=i)}.parquet" for i in range(DAYS)]
    landed = lk.read_parquet([lk.as_path(str(Path(onboard.lake) / MODEL / "incoming" / n)) for n in batches])
    assert len(landed) == ROWS
    # The text timestamps are stored as UTC times, each in the batch of its UTC day.
    assert str(landed["applied_at"].dtype).startswith("datetime64")
    assert landed["applied_at"].dt.tz is None
    one = pd.read_parquet(Path(onboard.lake) / MODEL / "incoming" / f"{first}.parquet")
    assert (one["applied_at"].dt.date == first).all()

    # A second export has no date at all: it lands whole, as today's batch.
    snapshot = credit_table(400, seed=7).drop(columns="applied_at")
    snapshot_file = tmp_path / "snapshot.parquet"
    snapshot.to_parquet(snapshot_file, index=False)
    code, out = cli(capsys, "ingest", MODEL, str(snapshot_file), "--date", today().isoformat())
    assert code == 0, out
    assert f"{today()}       400 rows  new" in out
    todays = pd.read_parquet(Path(onboard.lake) / MODEL / "incoming" / f"{today()}.parquet")
    assert (todays["applied_at"] == pd.Timestamp(today())).all()

    # The first contract, from the landed data, shown as a diff and written.
    code, out = cli(capsys, "contract", "suggest", MODEL, "--write")
    assert code == 0, out
    contract = Path(onboard.root) / "contracts" / f"{MODEL}.json"
    assert f"+++ {contract} (suggested)" in out
    assert f"from {DAYS + 1} batch(es)" in out
    suite = json.loads(contract.read_text())
    rules = {(e["type"], e["kwargs"].get("column")): e["kwargs"] for e in suite["expectations"]}
    assert rules["expect_column_values_to_be_in_set", "default"]["value_set"] == ["No", "Yes"]
    assert rules["expect_column_values_to_be_in_set", "home"]["value_set"] == ["mortgage", "own", "rent"]
    assert rules["expect_column_values_to_not_be_null", "income"]["mostly"] < 1
    assert ("expect_column_values_to_be_unique", "application_id") in rules
    # Running it again proposes nothing new.
    code, out = cli(capsys, "contract", "suggest", MODEL)
    assert code == 0 and "(no change)" in out

    code, out = cli(capsys, "check", MODEL)
    assert code == 0, out
    assert out.startswith(f"{MODEL}: OK")
    assert "labels 'No' -> 0, 'Yes' -> 1" in out

    spec = get_spec(MODEL)
    run, mlc = RunInfo(f"train_{MODEL}", "manual__onboarding", reason="first model"), onboard.mlc
    m = steps.resolve(spec, run, lake_root=onboard.lake, as_of=today())
    assert (m["batches"], m["rows"]) == (DAYS + 1, ROWS + 400)
    v = steps.validate(spec, run, manifest_uri=m["manifest_uri"], lake_root=onboard.lake)
    assert v["success"] and v["expectations"] == len(suite["expectations"])
    t = steps.train(spec, run, mlc, manifest_uri=m["manifest_uri"], lake_root=onboard.lake)
    assert not t["skipped"] and t["created"]
    assert t["holdout_metrics"]["roc_auc"] > 0.6
    assert 0 < t["holdout_metrics"]["log_loss"] < 1
    # The holdout carries the classes the metrics need, 1 for "Yes".
    holdout = pd.read_parquet(t["holdout_uri"])
    assert set(holdout["default"]) == {0, 1}
    e = steps.evaluate(
        spec, run, mlc, version=t["version"], holdout_uri=t["holdout_uri"], lake_root=onboard.lake
    )
    promoted = steps.promote(
        spec, run, mlc, verdict=steps.gate(spec, run, mlc, evaluation=e, lake_root=onboard.lake)
    )
    assert promoted["version"] == t["version"] == "1"
    champion = registry.version_by_alias(mlc, MODEL, registry.CHAMPION)
    assert champion is not None and str(champion.version) == "1"
    metrics = mlc.get_run(t["mlflow_run_id"]).data.metrics
    assert metrics["holdout_roc_auc"] == pytest.approx(t["holdout_metrics"]["roc_auc"], abs=1e-6)


# --- refusals -------------------------------------------------------------------------------------


def _edit_spec(env: Env, old: str, new: str) -> None:
    path = Path(env.root) / "models" / f"{MODEL}.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def _write_contract_from(env: Env, capsys, table: pd.DataFrame, tmp_path: Path) -> None:
    source = tmp_path / "seed.csv"
    table.to_csv(source, index=False)
    assert cli(capsys, "ingest", MODEL, str(source))[0] == 0
    assert cli(capsys, "contract", "suggest", MODEL, "--write")[0] == 0


def misspelled_estimator_class(env: Env, capsys, tmp_path: Path) -> str:
    _write_contract_from(env, capsys, credit_table(600, days=3), tmp_path)
    _edit_spec(env, "HistGradientBoostingClassifier", "HistGradientBoostingClasifier")
    code, out = cli(capsys, "check", MODEL)
    assert code == 1
    models_code, models_out = cli(capsys, "models")
    assert models_code == 2 and "HistGradientBoostingClasifier" in models_out
    return out + models_out


def misspelled_param(env: Env, capsys, tmp_path: Path) -> str:
    _write_contract_from(env, capsys, credit_table(600, days=3), tmp_path)
    _edit_spec(env, "max_iter: 40", "max_iters: 40")
    code, out = cli(capsys, "check", MODEL)
    assert code == 1
    models_code, models_out = cli(capsys, "models")
    assert models_code == 2 and "max_iters" in models_out
    return out + models_out


def misspelled_spec_key(env: Env, capsys, tmp_path: Path) -> str:
    _edit_spec(env, "  target: default", "  targt: default")
    code, out = cli(capsys, "check", MODEL)
    assert code == 1
    return out


def unknown_label_value(env: Env, capsys, tmp_path: Path) -> str:
    table = credit_table(600, days=3)
    table.loc[:9, "default"] = "Maybe"
    source = tmp_path / "labels.csv"
    table.to_csv(source, index=False)
    assert cli(capsys, "ingest", MODEL, str(source))[0] == 0
    spec, run = get_spec(MODEL), RunInfo(f"train_{MODEL}", "manual__labels")
    m = steps.resolve(spec, run, lake_root=env.lake, as_of=today())
    with pytest.raises(SpecError) as err:
        steps.train(spec, run, env.mlc, manifest_uri=m["manifest_uri"], lake_root=env.lake)
    assert env.mlc.search_model_versions(f"name = '{MODEL}'") == []
    return str(err.value)


def csv_without_time_column(env: Env, capsys, tmp_path: Path) -> str:
    source = tmp_path / "undated.csv"
    credit_table(300).drop(columns="applied_at").to_csv(source, index=False)
    code, out = cli(capsys, "ingest", MODEL, str(source))
    assert code == 2 and incoming(env) == {}
    return out


def duplicate_day_with_other_rows(env: Env, capsys, tmp_path: Path) -> str:
    day = today() - dt.timedelta(days=1)
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    credit_table(300, days=1, end=day).to_csv(first, index=False)
    credit_table(300, days=1, end=day, seed=1).to_csv(second, index=False)
    assert cli(capsys, "ingest", MODEL, str(first))[0] == 0
    before = incoming(env)
    assert cli(capsys, "ingest", MODEL, str(first))[0] == 0  # the same rows again change nothing
    code, out = cli(capsys, "ingest", MODEL, str(second))
    assert code == 2 and incoming(env) == before
    replaced_code, replaced = cli(capsys, "ingest", MODEL, str(second), "--replace")
    assert replaced_code == 0 and "replaced" in replaced and incoming(env) != before
    return out


REFUSALS = [
    (
        misspelled_estimator_class,
        r"sklearn\.ensemble has no class 'HistGradientBoostingClasifier'; did you mean "
        r"'HistGradientBoostingClassifier'\?",
    ),
    (
        misspelled_param,
        r"estimator\.params\.max_iters: .* takes no parameter 'max_iters'; did you mean 'max_iter'\?",
    ),
    (misspelled_spec_key, r"data\.targt: unknown key; did you mean 'target'\?"),
    (
        unknown_label_value,
        r"target 'default' holds \['Maybe'\], which data\.labels does not map \(it maps \['No', 'Yes'\]",
    ),
    (csv_without_time_column, r"has no time column 'applied_at' .*--time-column.*--date YYYY-MM-DD"),
    (duplicate_day_with_other_rows, r"1 day\(s\) already have a batch with other rows: .*Pass --replace"),
]


@pytest.mark.parametrize(("case", "message"), REFUSALS, ids=[c.__name__ for c, _ in REFUSALS])
def test_onboarding_mistake_is_refused_with_the_fix(onboard: Env, tmp_path: Path, capsys, case, message):
    """Each mistake stops with a message naming what is wrong and what to do, and changes nothing."""
    import re

    text = case(onboard, capsys, tmp_path)
    assert re.search(message, text, re.DOTALL), text
