"""The pre-training data check (``mlcycle.monitor.shift``) on both shipped models, and its
wiring in ``flows.train.train``: refusal, ``accept_data_shift`` with a reason, and the record."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from threadpoolctl import threadpool_limits

from mlcycle.core import settings
from mlcycle.core.errors import DataShiftError
from mlcycle.core.run import RunInfo
from mlcycle.core.spec import ModelSpec, parse_spec
from mlcycle.data import lake as lk
from mlcycle.data.generators import generate_batch
from mlcycle.flows import train as steps
from mlcycle.ml import training as tr
from mlcycle.monitor import shift
from mlcycle.monitor.reference import reference_profile
from mlcycle.store import registry

pytestmark = pytest.mark.filterwarnings("ignore:::mlflow.*")

MODELS = ["churn", "demand"]
END = dt.date(2026, 3, 10)  # the reference's last day; candidate windows come later


def quick_spec(model: str, **gate: Any) -> ModelSpec:
    """The shipped spec, quick to fit (few trees), with a 5-day window and ``gate.data_shift`` keys."""
    raw = yaml.safe_load((settings.specs_dir() / f"{model}.yaml").read_text())
    raw["data"]["training_window_days"] = 5
    params = raw["estimator"]["params"]
    params.update({"max_iter": 20} if "max_iter" in params else {"n_estimators": 10, "n_jobs": 1})
    raw["gate"]["data_shift"] = gate
    return parse_spec(raw, Path(f"{model}.yaml"))


def window(model: str, end: dt.date, days: int = 5, rows: int = 1500, **options: Any) -> pd.DataFrame:
    return pd.concat(
        [generate_batch(model, end - dt.timedelta(days=i), rows, **options) for i in range(days)],
        ignore_index=True,
    )


def permute_numeric(df: pd.DataFrame, spec: ModelSpec, *, jointly: bool, seed: int = 1) -> pd.DataFrame:
    """The numeric features' values permuted across rows: every marginal kept, relationships cut.
    ``jointly``: one permutation for all of them (they keep their relations with each other)."""
    rng = np.random.default_rng(seed)
    out = df.copy()
    if jointly:
        order = rng.permutation(len(out))
        for column in spec.features.numeric:
            out[column] = out[column].to_numpy()[order]
    else:
        for column in spec.features.numeric:
            out[column] = rng.permutation(out[column].to_numpy())
    return out


@dataclass
class Reference:
    spec: ModelSpec
    profile: dict[str, Any]


@pytest.fixture(scope="module", params=MODELS)
def reference(request) -> Reference:
    """A model fitted on a clean 5-day window and its reference profile, as training logs it."""
    spec = quick_spec(request.param)
    with threadpool_limits(limits=1):
        fitted = tr.train(window(spec.name, END), spec)
        profile = reference_profile(spec, fitted.pipeline, fitted.train, fitted.holdout)
    # What the champion logs goes through JSON: check what was stored, not the live objects.
    return Reference(spec, json.loads(json.dumps(profile)))


def check(ref: Reference, df: pd.DataFrame, spec: ModelSpec | None = None) -> shift.ShiftReport:
    return shift.check_shift(spec or ref.spec, ref.profile, df, champion_version="1")


def outcomes(report: shift.ShiftReport, kind: str) -> list[shift.ShiftCheck]:
    return [c for c in report.checks if c.check == kind]


# --- what the check refuses -----------------------------------------------------------------------


@pytest.mark.parametrize("jointly", [False, True], ids=["each-column", "all-columns-together"])
def test_permuted_numeric_columns_are_refused(reference, jointly):
    """Values permuted across rows keep every marginal (PSI stays near 0) but lose their
    relationships with the target and the categorical columns: the check refuses them."""
    spec = reference.spec
    clean = window(spec.name, END + dt.timedelta(days=10), seed=3)
    report = check(reference, permute_numeric(clean, spec, jointly=jointly))
    assert report.status == "refused"
    breached = report.breaches
    assert breached and {c.check for c in breached} == {"relationship"}
    numeric = set(spec.features.numeric)
    for c in breached:
        assert numeric & set(c.subject.split(" ~ ")), c.subject  # each names a permuted column
        assert c.observed is not None and c.reference is not None and c.bound is not None
        assert c.observed < c.bound == pytest.approx(0.5 * c.reference)
        assert f"association {c.observed:.3f} vs reference {c.reference:.3f}" in c.detail
    # A pair of the target with each strongly related numeric feature is among them.
    assert any(c.subject.endswith(f"~ {spec.data.target}") for c in breached)
    # The marginals really are intact: every marginal statistic reads what it reads on the same
    # rows unpermuted, so none could have seen this.
    marginals = [(c.subject, c.observed) for c in outcomes(report, "marginal")]
    assert marginals == [(c.subject, c.observed) for c in outcomes(check(reference, clean), "marginal")]
    assert report.summary().startswith(f"data shift: {len(breached)} of ")


@pytest.mark.parametrize("kind", ["numeric", "categorical"])
def test_a_feature_40_percent_null_is_refused(reference, kind):
    spec = reference.spec
    feature = getattr(spec.features, kind)[0]
    df = window(spec.name, END + dt.timedelta(days=10), seed=3)
    df.loc[df.sample(frac=0.4, random_state=0).index, feature] = None
    report = check(reference, df)
    assert report.status == "refused"
    (breach,) = [c for c in report.breaches if c.check == "null_rate"]
    assert breach.subject == feature
    assert breach.observed == pytest.approx(0.4 + 0.6 * breach.reference, abs=0.01)
    assert breach.bound == 0.1
    assert f"{feature}: null rate 4" in breach.detail and "allowed +10.0" in breach.detail


@pytest.mark.parametrize("kind", ["numeric", "categorical"])
def test_a_feature_null_on_every_row_is_refused(reference, kind):
    spec = reference.spec
    feature = getattr(spec.features, kind)[-1]
    df = window(spec.name, END + dt.timedelta(days=10), seed=3)
    df[feature] = None
    report = check(reference, df)
    assert report.status == "refused"
    nulls = [c for c in report.breaches if c.check == "null_rate"]
    assert [c.subject for c in nulls] == [feature]
    assert nulls[0].observed == 1.0
    assert f"{feature}: null on every row vs reference" in nulls[0].detail


def test_a_small_null_rise_is_allowed(reference):
    """Within the bound (+10 points) a null rate may move: feeds drop out now and then."""
    spec = reference.spec
    feature = spec.features.numeric[0]
    df = window(spec.name, END + dt.timedelta(days=10), seed=3)
    df.loc[df.sample(frac=0.05, random_state=0).index, feature] = None
    report = check(reference, df)
    assert report.status == "pass"
    (null,) = [c for c in outcomes(report, "null_rate") if c.subject == feature]
    assert null.outcome is shift.Outcome.PASS and null.observed == pytest.approx(0.05, abs=0.01)


# --- what it lets through -------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
@pytest.mark.parametrize(("days", "rows"), [(5, 1500), (1, 2000)], ids=["window", "one-batch"])
def test_clean_new_windows_pass(reference, seed, days, rows):
    """Fresh data from the same world (other days, other seeds, a window or one batch) passes,
    with the relationship checks actually run."""
    spec = reference.spec
    df = window(spec.name, END + dt.timedelta(days=7 * seed), days=days, rows=rows, seed=seed)
    report = check(reference, df)
    assert report.status == "pass", report.summary()
    relationships = [c for c in outcomes(report, "relationship") if c.outcome is shift.Outcome.PASS]
    assert len(relationships) >= 4
    assert all(c.observed >= 0.65 * c.reference for c in relationships)


def test_a_drifted_real_window_is_reported_not_refused(reference):
    """The generators' strongest drift moves the marginals far (PSI well above the drift
    monitor's 0.2) while relationships hold: reported, not refused (retraining on a changed world
    is what drift monitoring asks for)."""
    spec = reference.spec
    df = window(spec.name, END + dt.timedelta(days=10), days=1, rows=3000, seed=5, drift=1.0)
    report = check(reference, df)
    assert report.status == "pass", report.summary()
    marginals = outcomes(report, "marginal")
    assert {c.outcome for c in marginals} <= {shift.Outcome.REPORTED, shift.Outcome.SKIPPED}
    assert max(c.observed or 0.0 for c in marginals) > 0.2
    assert all("reported only" in c.detail for c in marginals if c.outcome is shift.Outcome.REPORTED)


def test_max_psi_makes_a_marginal_shift_refuse(reference):
    spec = quick_spec(reference.spec.name, max_psi=0.2)
    df = window(spec.name, END + dt.timedelta(days=10), days=1, rows=3000, seed=5, drift=1.0)
    report = check(reference, df, spec)
    assert report.status == "refused"
    assert report.breaches and {c.check for c in report.breaches} == {"marginal"}
    assert all(c.observed > 0.2 and "allowed ≤ 0.2" in c.detail for c in report.breaches)


def test_too_few_rows_skip_the_relationships(reference):
    """Associations of a few hundred rows are too noisy to judge: skipped, saying why; the
    null-rate checks still run."""
    spec = reference.spec
    df = permute_numeric(
        window(spec.name, END + dt.timedelta(days=10), days=1, rows=400), spec, jointly=False
    )
    report = check(reference, df)
    (skipped,) = outcomes(report, "relationship")
    assert skipped.outcome is shift.Outcome.SKIPPED
    assert "400 rows, fewer than gate.data_shift.min_rows (1000)" in skipped.detail
    assert all(c.outcome is shift.Outcome.PASS for c in outcomes(report, "null_rate"))


def test_a_profile_without_associations_skips_the_relationships(reference):
    """A champion trained before associations were logged: relationships are skipped with the fix."""
    old = {k: v for k, v in reference.profile.items() if k != "associations"}
    df = permute_numeric(
        window(reference.spec.name, END + dt.timedelta(days=10)), reference.spec, jointly=False
    )
    report = shift.check_shift(reference.spec, old, df, champion_version="1")
    (skipped,) = outcomes(report, "relationship")
    assert skipped.outcome is shift.Outcome.SKIPPED and "retrain it to add them" in skipped.detail
    assert report.status == "pass"


def test_report_round_trips_through_json(reference):
    df = permute_numeric(
        window(reference.spec.name, END + dt.timedelta(days=10)), reference.spec, jointly=False
    )
    report = check(reference, df)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["status"] == "refused" and data["summary"] == report.summary()
    assert shift.ShiftReport.from_dict(data) == report


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (np.arange(1000) % 4, np.arange(1000) % 4, 1.0),  # one-to-one
        (np.arange(1000) % 4, np.zeros(1000, dtype="int64"), None),  # a constant column
        (np.arange(1000) % 4, np.full(1000, -1), None),  # all missing
    ],
)
def test_cramers_v_bounds(a, b, expected):
    assert shift.cramers_v(np.asarray(a), np.asarray(b)) == (pytest.approx(expected) if expected else None)


def test_cramers_v_of_independent_columns_is_near_zero_whatever_the_size():
    """The bias correction: without it V of independent columns is ≈ sqrt(df / n), 0.1 at 800 rows."""
    rng = np.random.default_rng(0)
    for n in (800, 20_000):
        assert shift.cramers_v(rng.integers(0, 10, n), rng.integers(0, 10, n)) < 0.05


# --- wiring in flows.train.train: refuse, accept with a reason, record ---------------------------


RUN = RunInfo("train_churn", "manual__shifted", reason="", trigger="test")


@pytest.fixture
def churn_champion(store):
    """churn v1 champion, trained on a clean 5-day window ending END, with the plain steps."""
    env = store
    spec = quick_spec("churn")
    mlc = env.mlc
    L = lk.Lake(env.lake, "churn")
    for i in range(5):
        day = END - dt.timedelta(days=i)
        lk.write_parquet(generate_batch("churn", day, 1500), L.batch_path(day))
    run = RunInfo("train_churn", "setup", reason="test setup", trigger="test")
    with threadpool_limits(limits=1):
        m = steps.resolve(spec, run, lake_root=env.lake, as_of=END)
        t = steps.train(spec, run, mlc, manifest_uri=m["manifest_uri"], lake_root=env.lake)
        e = steps.evaluate(
            spec, run, mlc, version=t["version"], holdout_uri=t["holdout_uri"], lake_root=env.lake
        )
        steps.promote(spec, run, mlc, verdict=steps.gate(spec, run, mlc, evaluation=e, lake_root=env.lake))
    setup = mlc.get_run(t["mlflow_run_id"])
    assert setup.data.tags[steps.TAG_DATA_SHIFT] == "skipped"  # no champion to compare with yet
    return spec, mlc


def permuted_manifest(env, spec: ModelSpec, run: RunInfo) -> str:
    """A permuted batch of 6,000 rows, resolved by ``batch_uri`` into a manifest for ``run``."""
    path = Path(env.lake) / "uploads" / "permuted.parquet"  # batch_uri is confined to the lake
    df = permute_numeric(
        window("churn", END + dt.timedelta(days=1), days=1, rows=6000, seed=4), spec, jointly=False
    )
    lk.write_parquet(df, path)
    return steps.resolve(spec, run, lake_root=env.lake, as_of=END, batch_uri=str(path))["manifest_uri"]


def shift_record(env, mlc, run: RunInfo) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """The MLflow run of ``run``'s training, its logged check report and the one in the lake."""
    (mlflow_run,) = mlc.search_runs(
        [registry.ensure_experiment(mlc, "churn")], f"tags.`{registry.TAG_RUN_ID}` = '{run.run_id}'"
    )
    logged = registry.load_run_json(mlc, mlflow_run.info.run_id, steps.DATA_SHIFT_ARTIFACT)
    in_lake = lk.read_json(lk.Lake(env.lake, "churn").run_file(run.key, lk.RunFile.DATA_SHIFT))
    return mlflow_run, logged, in_lake


def test_a_shifted_window_is_refused_before_training(env, churn_champion):
    spec, mlc = churn_champion
    manifest_uri = permuted_manifest(env, spec, RUN)
    with pytest.raises(DataShiftError) as err:
        steps.train(spec, RUN, mlc, manifest_uri=manifest_uri, lake_root=env.lake)
    text = str(err.value)
    assert "churn: refusing to train on 6000 rows: they depart from champion v1's reference profile" in text
    assert "relationship tenure_months ~ churned: association 0.0" in text
    assert "trigger with accept_data_shift=true and a reason to train anyway" in text
    assert "Nothing was trained" in text
    assert [str(v.version) for v in mlc.search_model_versions("name = 'churn'")] == ["1"]
    mlflow_run, logged, in_lake = shift_record(env, mlc, RUN)
    assert mlflow_run.info.status == "FAILED"
    assert mlflow_run.data.tags[steps.TAG_DATA_SHIFT] == "refused"
    assert logged == in_lake and logged["status"] == "refused" and logged["champion_version"] == "1"
    assert lk.uri_of(lk.Lake(env.lake, "churn").run_file(RUN.key, lk.RunFile.DATA_SHIFT)) in text


def test_accept_data_shift_needs_a_reason(env, churn_champion):
    spec, mlc = churn_champion
    manifest_uri = permuted_manifest(env, spec, RUN)
    with pytest.raises(
        DataShiftError, match=r"accept_data_shift=true needs a reason; trigger again with reason"
    ):
        steps.train(spec, RUN, mlc, manifest_uri=manifest_uri, lake_root=env.lake, accept_data_shift=True)
    assert [str(v.version) for v in mlc.search_model_versions("name = 'churn'")] == ["1"]


def test_accept_data_shift_with_a_reason_trains_and_records_it(env, churn_champion):
    spec, mlc = churn_champion
    run = RunInfo("train_churn", "manual__accepted", reason="prices were re-based upstream", trigger="test")
    manifest_uri = permuted_manifest(env, spec, run)
    with threadpool_limits(limits=1):
        out = steps.train(
            spec, run, mlc, manifest_uri=manifest_uri, lake_root=env.lake, accept_data_shift=True
        )
    assert out["skipped"] is False and out["version"] == "2"
    mlflow_run, logged, in_lake = shift_record(env, mlc, run)
    tags = mlflow_run.data.tags
    assert tags[steps.TAG_DATA_SHIFT] == "accepted"
    assert tags[steps.TAG_DATA_SHIFT_REASON] == "prices were re-based upstream"
    assert logged == in_lake
    assert logged["status"] == "accepted" and logged["accepted"] == "prices were re-based upstream"
    assert any(c["outcome"] == "fail" and c["check"] == "relationship" for c in logged["checks"])
    version_tags = mlc.get_model_version("churn", "2").tags
    assert version_tags[steps.TAG_DATA_SHIFT] == "accepted"
    assert version_tags[steps.TAG_DATA_SHIFT_REASON] == "prices were re-based upstream"


def test_clean_data_passes_and_is_recorded(env, churn_champion):
    spec, mlc = churn_champion
    run = RunInfo("train_churn", "manual__clean", reason="", trigger="test")
    L = lk.Lake(env.lake, "churn")
    for i in range(5):
        day = END + dt.timedelta(days=5 - i)
        lk.write_parquet(generate_batch("churn", day, 1500, seed=2), L.batch_path(day))
    manifest_uri = steps.resolve(spec, run, lake_root=env.lake, as_of=END + dt.timedelta(days=5))[
        "manifest_uri"
    ]
    with threadpool_limits(limits=1):
        out = steps.train(spec, run, mlc, manifest_uri=manifest_uri, lake_root=env.lake)
    assert out["version"] == "2"
    mlflow_run, logged, _ = shift_record(env, mlc, run)
    assert mlflow_run.data.tags[steps.TAG_DATA_SHIFT] == "pass" and logged["status"] == "pass"
    assert steps.TAG_DATA_SHIFT_REASON not in mlflow_run.data.tags
    assert mlc.get_model_version("churn", "2").tags[steps.TAG_DATA_SHIFT] == "pass"
