"""The catalog of bad inputs: each is sent the way a user sends it, and each must end in a
domain error that says what was wrong and what to do, with no new champion.

Every case is a small named builder. It starts from a copy of the session's golden store
(churn v1 champion, a week of batches ending yesterday, ``champion_env``) and sends one bad
thing: a batch landed in the lake's ``incoming/`` for today (read as part of the training
window), a file passed as ``batch_uri`` (under the allowed inputs), a model spec edited in a
specs folder, or a run param. The training flow then runs through the domain steps the
operators call (``mlcycle.flows.train``: resolve → validate → train → evaluate → gate →
promote; scoring params through ``flows.score.choose_model``), and the case asserts:

- the error class, an ``MlcycleError`` subclass, so the operator fails without retries
  (``mlcycle_airflow.operators.domain_errors``);
- a message naming what was wrong (the column, file or key) and what to do;
- no new champion: the alias and the ledger are unchanged, and no version is registered
  unless the gate was what refused it;
- a bad file that is data is kept: its bytes are in quarantine (found by digest) and the
  file the user sent is untouched.

The module's last tests show that what the contract does not name is allowed and unused, and
that after bad inputs the next good batch trains normally.

Not here, on purpose: bad REST requests (wrong types, nulls, extra columns, unseen categories,
bad ``params``...) are the ``REFUSALS`` of ``tests/serving/test_rest_serving.py``, against a
real server; params the trigger form refuses by their JSON schema (``batch_uri`` patterns,
``force: "yes"``, ``estimator_params: [1, 2]``) are ``tests/dags/test_dag_integrity.py::
test_bad_params_are_refused``. The params here are those the schema lets through.
"""

from __future__ import annotations

import datetime as dt
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from mlcycle.core.errors import (
    DataNotFoundError,
    DataShiftError,
    GateFailedError,
    InputNotAllowedError,
    MlcycleError,
    RegistryError,
    SpecError,
    UnreadableDataError,
    ValidationFailedError,
)
from tests.conftest import GOLDEN_DAYS, GOLDEN_MODEL, REPO, golden_end, today

if TYPE_CHECKING:
    from collections.abc import Callable

    import pandas as pd

    from mlcycle.core.run import RunInfo
    from tests.conftest import Env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = GOLDEN_MODEL
ROWS = 1500  # the golden store's batches: "the usual size"


@dataclass
class Sent:
    """What a case sent and how: ``conf`` is the run's params (and ``specs_dir`` for a spec
    case), ``file`` the bad file when there is one, ``flow`` the use-case it goes to."""

    how: str
    conf: dict[str, Any] = field(default_factory=dict)
    file: Path | None = None
    flow: str = "train"


@dataclass
class Sender:
    """How a user hands the system data: into the lake's incoming area or by ``batch_uri``."""

    env: Env
    outside: Path  # a folder outside the lake and the allowed inputs

    def good(self, rows: int = ROWS, seed: int = 11) -> pd.DataFrame:
        """Today's batch as it should be."""
        from mlcycle.data.generators import generate_batch

        return generate_batch(MODEL, today(), rows, seed=seed)

    def today_path(self) -> Path:
        from mlcycle.data import lake as lk

        return Path(str(lk.Lake(self.env.lake, MODEL).batch_path(today())))

    def land(self, data: pd.DataFrame | bytes) -> Sent:
        """Land ``data`` as today's batch in incoming/: the next run reads it with the window."""
        path = self.today_path()
        write(data, path)
        return Sent("landed in incoming/ (window)", file=path)

    def upload(self, data: pd.DataFrame | bytes, name: str = "batch.parquet") -> Sent:
        """Put ``data`` in an allowed folder and send it by ``batch_uri``."""
        path = self.env.root / "uploads" / name
        write(data, path)
        return Sent("batch_uri", {"batch_uri": str(path)}, file=path)


def write(data: pd.DataFrame | bytes, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else parquet_bytes(data))


def parquet_bytes(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


# --- data: files that are not batches -------------------------------------------------------------


def empty_file(s: Sender) -> Sent:
    return s.land(b"")


def header_only(s: Sender) -> Sent:
    return s.land(s.good().head(0))


def truncated_parquet(s: Sender) -> Sent:
    data = parquet_bytes(s.good())
    return s.land(data[: len(data) // 2])


def csv_named_parquet(s: Sender) -> Sent:
    return s.land(s.good().to_csv(index=False).encode())


def nested_column(s: Sender) -> Sent:
    df = s.good()
    df["tags"] = [[1, 2]] * len(df)
    return s.upload(df)


# --- data: columns ------------------------------------------------------------------------------


def text_in_numeric(s: Sender) -> Sent:
    df = s.good()
    df["monthly_charges"] = df["monthly_charges"].astype(str)
    df.loc[:9, "monthly_charges"] = "n/a"
    return s.upload(df)


def numbers_as_text(s: Sender) -> Sent:
    df = s.good()
    df["tenure_months"] = df["tenure_months"].astype(str)
    return s.upload(df)


def missing_column(s: Sender) -> Sent:
    return s.upload(s.good().drop(columns="region"))


def renamed_column(s: Sender) -> Sent:
    return s.upload(s.good().rename(columns={"monthly_charges": "monthly_charge"}))


def upper_cased_columns(s: Sender) -> Sent:
    return s.land(s.good().rename(columns=str.upper))


# --- data: nulls, keys, values ----------------------------------------------------------------------


def all_null_feature(s: Sender) -> Sent:
    df = s.good()
    df["tenure_months"] = float("nan")
    return s.upload(df)


def null_spike(s: Sender) -> Sent:
    df = s.good()
    df.loc[df.sample(frac=0.4, random_state=0).index, "support_calls"] = float("nan")
    return s.upload(df)


def null_spike_beyond_the_share_allowed(s: Sender) -> Sent:
    df = s.good()
    df.loc[df.sample(frac=0.4, random_state=0).index, "age"] = float("nan")
    return s.upload(df)


def null_keys(s: Sender) -> Sent:
    df = s.good()
    df["customer_id"] = df["customer_id"].astype(object)
    df.loc[:4, "customer_id"] = None
    return s.upload(df)


def duplicate_keys(s: Sender) -> Sent:
    df = s.good()
    df.loc[:9, "customer_id"] = df.loc[10, "customer_id"]
    return s.land(df)


def out_of_range(s: Sender) -> Sent:
    df = s.good()
    df.loc[:9, "monthly_charges"] = 9999.0
    return s.upload(df)


def negative_values(s: Sender) -> Sent:
    df = s.good()
    df.loc[:9, "tenure_months"] = -3
    return s.upload(df)


def unseen_category(s: Sender) -> Sent:
    df = s.good()
    df.loc[:9, "contract"] = "lifetime"
    return s.upload(df)


def infinities(s: Sender) -> Sent:
    df = s.good()
    df.loc[:9, "total_charges"] = float("inf")
    return s.upload(df)


def permuted_numeric_columns(s: Sender) -> Sent:
    """Each numeric column shuffled across rows: marginals intact, relationships gone."""
    import numpy as np

    from mlcycle.core.spec import get_spec

    df = s.good(rows=2 * ROWS)
    rng = np.random.default_rng(0)
    for column in get_spec(MODEL).features.numeric:
        df[column] = rng.permutation(df[column].to_numpy())
    return s.upload(df)


def hundred_times_the_usual_size(s: Sender) -> Sent:
    return s.upload(s.good(rows=100 * ROWS))


# --- data: the label --------------------------------------------------------------------------------


def label_missing(s: Sender) -> Sent:
    return s.upload(s.good().drop(columns="churned"))


def label_constant(s: Sender) -> Sent:
    df = s.good()
    df["churned"] = 0
    return s.upload(df)


def label_unknown_class(s: Sender) -> Sent:
    df = s.good()
    df.loc[:9, "churned"] = 2
    return s.upload(df)


def label_null_on_some_rows(s: Sender) -> Sent:
    df = s.good()
    df["churned"] = df["churned"].astype("float64")
    df.loc[:9, "churned"] = float("nan")
    return s.upload(df)


def leakage_feature_equal_to_the_label(s: Sender) -> Sent:
    """Upstream starts filling a feature with the outcome: a model trained on it looks perfect on
    its own holdout. (A leak in a column the spec does not name is never used: see below.)"""
    df = s.good(rows=2 * ROWS)
    df["support_calls"] = df["churned"]
    return s.upload(df)


# --- data: the time column --------------------------------------------------------------------------


def time_null(s: Sender) -> Sent:
    df = s.good()
    df.loc[:9, "event_date"] = None
    return s.upload(df)


def time_in_the_future(s: Sender) -> Sent:
    df = s.good()
    df["event_date"] = df["event_date"] + dt.timedelta(days=5 * 365)
    return s.upload(df)


def time_as_text(s: Sender) -> Sent:
    df = s.good()
    df["event_date"] = df["event_date"].dt.strftime("%d/%m/%Y")
    return s.upload(df)


def time_garbage(s: Sender) -> Sent:
    df = s.good()
    df["event_date"] = "soon"
    return s.upload(df)


# --- data: where it is read from --------------------------------------------------------------------


def http_uri(s: Sender) -> Sent:
    return Sent("batch_uri", {"batch_uri": "http://127.0.0.1:9/churn/2026-12-01.parquet"})


def outside_the_allowed_roots(s: Sender) -> Sent:
    path = s.outside / "batch.parquet"
    write(s.good(), path)
    return Sent("batch_uri", {"batch_uri": str(path)})


def dotdot_out_of_the_lake(s: Sender) -> Sent:
    path = s.outside / "batch.parquet"
    write(s.good(), path)
    return Sent("batch_uri", {"batch_uri": os.path.join(s.env.lake, os.path.relpath(path, s.env.lake))})


def relative_uri(s: Sender) -> Sent:
    return Sent("batch_uri", {"batch_uri": "uploads/batch.parquet"})


def missing_file(s: Sender) -> Sent:
    return Sent("batch_uri", {"batch_uri": str(s.env.root / "uploads" / "never-landed.parquet")})


def symlink_out_of_the_lake(s: Sender) -> Sent:
    target = s.outside / "secret.parquet"
    write(s.good(), target)
    s.today_path().symlink_to(target)
    return Sent("symlink in incoming/ (window)")


# --- specs: the model's YAML, edited in a specs folder, with a good batch landed ----------------


def spec_edit(s: Sender, old: str, new: str) -> Sent:
    folder = s.env.root / "specs"
    folder.mkdir(exist_ok=True)
    text = (REPO / "include" / "models" / f"{MODEL}.yaml").read_text()
    assert old in text, f"the shipped spec changed: {old!r} is not in it"
    (folder / f"{MODEL}.yaml").write_text(text.replace(old, new, 1))
    s.land(s.good())
    return Sent("spec file", {"specs_dir": str(folder)})


ESTIMATOR = "sklearn.ensemble.HistGradientBoostingClassifier"


def unknown_estimator_class(s: Sender) -> Sent:
    return spec_edit(s, ESTIMATOR, "sklearn.ensemble.RandomForrestClassifier")


def estimator_outside_sklearn(s: Sender) -> Sent:
    return spec_edit(s, ESTIMATOR, "os.system")


def misspelled_spec_key(s: Sender) -> Sent:
    return spec_edit(s, "  target: churned", "  targt: churned")


def misspelled_estimator_param(s: Sender) -> Sent:
    return spec_edit(s, "    max_iter: 150", "    max_iters: 150")


def wrong_type_of_spec_value(s: Sender) -> Sent:
    return spec_edit(s, "training_window_days: 30", "training_window_days: thirty")


def wrong_type_of_estimator_param(s: Sender) -> Sent:
    return spec_edit(s, "learning_rate: 0.08", "learning_rate: fast")


def contract_file_missing(s: Sender) -> Sent:
    return spec_edit(s, "contract: churn.json", "contract: churn_v2.json")


def feature_the_data_lacks(s: Sender) -> Sent:
    return spec_edit(s, "numeric: [tenure_months,", "numeric: [tenure_days, tenure_months,")


# --- params: values the trigger form's JSON schema lets through ----------------------------------


def estimator_params_of_the_wrong_type(s: Sender) -> Sent:
    s.land(s.good())
    return Sent("run param", {"estimator_params": {"max_iter": "lots"}})


def estimator_params_misspelled(s: Sender) -> Sent:
    s.land(s.good())
    return Sent("run param", {"estimator_params": {"max_iters": 300}})


def accept_data_shift_without_a_reason(s: Sender) -> Sent:
    s.land(s.good())
    return Sent("run param", {"accept_data_shift": True, "reason": "   "})


def score_version_not_a_number(s: Sender) -> Sent:
    return Sent("run param (score)", {"version": "latest"}, flow="score")


def score_version_that_does_not_exist(s: Sender) -> Sent:
    return Sent("run param (score)", {"version": "99"}, flow="score")


def score_alias_that_is_not_set(s: Sender) -> Sent:
    return Sent("run param (score)", {"alias": "production"}, flow="score")


# --- the catalog ----------------------------------------------------------------------------------

FIX = r".*Fix the source or drop the batch, then rerun"  # what validation tells to do
SHIFT_FIX = r".*Nothing was trained.*If the data is right .*accept_data_shift=true and a reason"
TIME_TYPE = r"expect_column_values_to_be_in_type_list\(event_date, type_list=\['datetime64\[s\]'[^)]*\): observed 'str'"
CONFINED = r".*Runs read only under the lake root .*Move the file under an allowed location"


def case(
    family: str, build: Callable[[Sender], Sent], error: type[MlcycleError], message: str, *marks: Any
) -> Any:
    return pytest.param(build, error, "(?s)" + message, id=f"{family}-{build.__name__}", marks=marks)


# Each message names what was wrong (file, column, key) and what to do.
CASES = [
    # data: files that are not batches
    case("data", empty_file, UnreadableDataError, r"cannot read \S+/incoming/\d{4}-\d\d-\d\d\.parquet as a batch: the file is empty \(0 bytes\).*land the complete file again.*quarantined it in"),
    case("data", header_only, ValidationFailedError, r"\S+/incoming/\S+\.parquet: .*expect_table_row_count_to_be_between\(min_value=\d+, max_value=\d+\): observed 0" + FIX),
    case("data", truncated_parquet, UnreadableDataError, r"cannot read \S+/incoming/\S+\.parquet as a batch: it is not a Parquet file \(no Parquet footer\).*truncated upload; export it as Parquet and land it again"),
    case("data", csv_named_parquet, UnreadableDataError, r"cannot read \S+/incoming/\S+\.parquet as a batch: it is not a Parquet file .*a CSV or another format named \.parquet.*export it as Parquet and land it again"),
    case("data", nested_column, UnreadableDataError, r"cannot read \S+/batch\.parquet as a batch: column\(s\) tags \(list<.*\) have a nested type.*flatten them into scalar columns"),
    # data: columns
    case("data", text_in_numeric, ValidationFailedError, r"type problem: column 'monthly_charges' holds text \(dtype \S+\), not numbers, e\.g\. \['n/a'\]; cast it to a number upstream or fix the contract" + FIX),
    case("data", numbers_as_text, ValidationFailedError, r"column 'tenure_months' holds numbers stored as text.*cast it to a number upstream" + FIX),
    case("data", missing_column, ValidationFailedError, r"expect_column_to_exist\(columns=\['region'\]\): 1 column\(s\) missing; the batch has 11 column\(s\).*add them upstream or fix the contract" + FIX),
    case("data", renamed_column, ValidationFailedError, r"expect_column_to_exist\(columns=\['monthly_charges'\]\): 1 column\(s\) missing; the batch has 12 column\(s\): \[[^]]*'monthly_charge'.*add them upstream or fix the contract" + FIX),
    case("data", upper_cased_columns, ValidationFailedError, r"12 column\(s\) missing.*they differ only in case \('CUSTOMER_ID' for 'customer_id'.*'CHURNED' for 'churned'\): rename them upstream or fix the contract" + FIX),
    # data: nulls, keys, values
    case("data", all_null_feature, ValidationFailedError, r"expect_column_values_to_not_be_null\(tenure_months\): 1500 unexpected values \(100\.00%\)" + FIX),
    case("data", null_spike, ValidationFailedError, r"expect_column_values_to_not_be_null\(support_calls\): 600 unexpected values \(40\.00%\)" + FIX),
    case("data", null_spike_beyond_the_share_allowed, ValidationFailedError, r"expect_column_values_to_not_be_null\(age, mostly=0\.\d+\): \d+ unexpected values \(4\d\.\d+%\)" + FIX),
    case("data", null_keys, ValidationFailedError, r"expect_column_values_to_not_be_null\(customer_id\): 5 unexpected values" + FIX),
    case("data", duplicate_keys, ValidationFailedError, r"\S+/incoming/\S+: 1 of \d+ expectations failed.*expect_column_values_to_be_unique\(customer_id\): 11 unexpected values" + FIX),
    case("data", out_of_range, ValidationFailedError, r"expect_column_values_to_be_between\(monthly_charges, [^)]*\): 10 unexpected values .*9999\.0" + FIX),
    case("data", negative_values, ValidationFailedError, r"expect_column_values_to_be_between\(tenure_months, [^)]*\): 10 unexpected values .*-3" + FIX),
    case("data", unseen_category, ValidationFailedError, r"expect_column_values_to_be_in_set\(contract, value_set=\[.*\]\): 10 unexpected values .*'lifetime'" + FIX),
    case("data", infinities, ValidationFailedError, r"expect_column_values_to_be_between\(total_charges, [^)]*\): 10 unexpected values .*\binf\b" + FIX),
    case("data", permuted_numeric_columns, DataShiftError, r"refusing to train on 3000 rows: they depart from champion v1's reference profile.*relationship \w+ ~ churned: association 0\.0\d+ vs reference" + SHIFT_FIX),
    case("data", hundred_times_the_usual_size, ValidationFailedError, r"expect_table_row_count_to_be_between\(min_value=\d+, max_value=\d+\): observed 150000" + FIX),
    # data: the label
    case("data", label_missing, ValidationFailedError, r"expect_column_to_exist\(columns=\['churned'\]\): 1 column\(s\) missing.*add them upstream" + FIX),
    case("data", label_constant, ValidationFailedError, r"expect_column_mean_to_be_between\(churned, [^)]*\): observed 0\.0" + FIX),
    case("data", label_unknown_class, ValidationFailedError, r"expect_column_values_to_be_in_set\(churned, value_set=\[0, 1\]\): 10 unexpected values .*\[2, 2" + FIX),
    case("data", label_null_on_some_rows, ValidationFailedError, r"expect_column_values_to_not_be_null\(churned\): 10 unexpected values" + FIX),
    case("data", leakage_feature_equal_to_the_label, DataShiftError, r"leakage support_calls ~ churned: association 1\.000 vs reference 0\.\d+, allowed < 0\.900: 'support_calls' looks filled from the label \(leakage\); fix the column upstream" + SHIFT_FIX),
    # data: the time column
    case("data", time_null, ValidationFailedError, r"expect_column_values_to_not_be_null\(event_date\): 10 unexpected values" + FIX),
    case("data", time_in_the_future, ValidationFailedError, r"expect_column_values_to_be_between\(event_date, [^)]*now\(\) \+ timedelta\(days=1\)[^)]*\): 1500 unexpected values \(100\.00%\), e\.g\. \['\d{4}-" + FIX),
    case("data", time_as_text, ValidationFailedError, TIME_TYPE + FIX),
    case("data", time_garbage, ValidationFailedError, TIME_TYPE + FIX),
    # data: where it is read from
    case("data", http_uri, InputNotAllowedError, r"input http://127\.0\.0\.1:9/\S+ is refused: the scheme http:// is not allowed" + CONFINED),
    case("data", outside_the_allowed_roots, InputNotAllowedError, r"input \S+/outside\d*/batch\.parquet is refused: it resolves to \S+/outside\d*/batch\.parquet, outside every allowed folder" + CONFINED),
    case("data", dotdot_out_of_the_lake, InputNotAllowedError, r"input \S+/lake/\.\./\S+ is refused: it resolves to \S+/batch\.parquet, outside every allowed folder" + CONFINED),
    case("data", relative_uri, InputNotAllowedError, r"input uploads/batch\.parquet is refused: it is a relative path; give an absolute one" + CONFINED),
    case("data", missing_file, DataNotFoundError, r"batch_uri \S+/never-landed\.parquet does not exist; pass the URI of a Parquet file"),
    case("data", symlink_out_of_the_lake, InputNotAllowedError, r"input \S+/incoming/\S+\.parquet is refused: it resolves to \S+/secret\.parquet, outside every allowed folder" + CONFINED),
    # specs
    case("spec", unknown_estimator_class, SpecError, r"estimator\.class\b.*sklearn\.ensemble has no class 'RandomForrestClassifier'; did you mean 'RandomForestClassifier'\?"),
    case("spec", estimator_outside_sklearn, SpecError, r"invalid model spec \S+/churn\.yaml:.*estimator\.class: 'os\.system' is not a scikit-learn estimator path; use e\.g\. 'sklearn\."),
    case("spec", misspelled_spec_key, SpecError, r"invalid model spec \S+/churn\.yaml:.*data\.targt: unknown key; did you mean 'target'\?"),
    case("spec", misspelled_estimator_param, SpecError, r"max_iters.*did you mean 'max_iter'\?"),
    case("spec", wrong_type_of_spec_value, SpecError, r"invalid model spec \S+/churn\.yaml:.*data\.training_window_days: Input should be a valid integer"),
    case("spec", wrong_type_of_estimator_param, SpecError, r"learning_rate.* must be a float.*Got 'fast'"),
    case("spec", contract_file_missing, SpecError, r"contract \S+/churn_v2\.json does not exist; add the GX suite or fix the spec's `contract` key"),
    case("spec", feature_the_data_lacks, SpecError, r"the data lacks columns \['tenure_days'\] named in the spec.*\b([Aa]dd|[Rr]emove)\b"),
    # params
    case("param", estimator_params_of_the_wrong_type, SpecError, r"max_iter.* must be an int.*Got 'lots'"),
    case("param", estimator_params_misspelled, SpecError, r"max_iters.*did you mean 'max_iter'\?"),
    case("param", accept_data_shift_without_a_reason, DataShiftError, r"accept_data_shift=true needs a reason; trigger again with reason set to why this data is right"),
    case("param", score_version_not_a_number, RegistryError, r"churn has no version latest; see `mlcycle champion churn`"),
    case("param", score_version_that_does_not_exist, RegistryError, r"churn has no version 99; see `mlcycle champion churn`"),
    case("param", score_alias_that_is_not_set, RegistryError, r"churn@production is not set: nothing to score with\. Train a model first .* or pass a version"),
]  # fmt: skip


# --- running what was sent --------------------------------------------------------------------------


def run_info(key: str, reason: str = "bad input catalog") -> RunInfo:
    from mlcycle.core.run import RunInfo

    return RunInfo(f"train_{MODEL}", f"manual__{key}", reason=reason, trigger="test")


def run(env: Env, sent: Sent, key: str) -> None:
    """What the DAG's tasks do with ``sent``, step by step through the domain flows."""
    from mlcycle.core.spec import get_spec
    from mlcycle.flows import score
    from mlcycle.flows import train as steps

    conf, mlc = sent.conf, env.mlc
    spec = get_spec(MODEL, conf.get("specs_dir"))
    if sent.flow == "score":
        score.choose_model(spec, mlc, alias=conf.get("alias", "champion"), version=conf.get("version"))
        return
    info = run_info(key, conf.get("reason", "bad input catalog"))
    m = steps.resolve(spec, info, lake_root=env.lake, as_of=today(), batch_uri=conf.get("batch_uri"))
    steps.validate(spec, info, manifest_uri=m["manifest_uri"], lake_root=env.lake)
    t = steps.train(
        spec,
        info,
        mlc,
        manifest_uri=m["manifest_uri"],
        lake_root=env.lake,
        overrides=conf.get("estimator_params"),
        accept_data_shift=conf.get("accept_data_shift", False),
    )
    assert not t["skipped"], t
    e = steps.evaluate(
        spec, info, mlc, version=t["version"], holdout_uri=t["holdout_uri"], lake_root=env.lake
    )
    verdict = steps.gate(spec, info, mlc, evaluation=e, lake_root=env.lake)
    steps.promote(spec, info, mlc, verdict=verdict, ledger_uri=env.ledger_uri, lake_root=env.lake)


@dataclass(frozen=True)
class State:
    """What a bad input must not change: the aliases, the versions and the ledger."""

    champion: str | None
    challenger: str | None
    versions: tuple[str, ...]
    ledger: tuple[tuple[Any, ...], ...]

    @classmethod
    def of(cls, env: Env) -> State:
        from mlcycle.store import ledger, registry

        mlc = env.mlc

        def alias(name: str) -> str | None:
            mv = registry.version_by_alias(mlc, MODEL, name)
            return str(mv.version) if mv else None

        versions = sorted((str(v.version) for v in mlc.search_model_versions(f"name = '{MODEL}'")), key=int)
        entries = ledger.history(MODEL, uri=env.ledger_uri)
        return cls(
            alias("champion"),
            alias("challenger"),
            tuple(versions),
            tuple((e.previous_version, e.new_version, e.action) for e in entries),
        )


def quarantined(env: Env, path: Path) -> bool:
    """Whether ``path``'s bytes are in the model's quarantine (it is matched by digest)."""
    from mlcycle.data import lake as lk

    return lk.Lake(env.lake, MODEL).quarantine_index().find(path) is not None


@pytest.mark.parametrize(("build", "error", "message"), CASES)
def test_a_bad_input_is_refused_with_what_to_do_and_no_new_champion(
    champion_env, tmp_path_factory, build, error, message
):
    """One catalog case (module docstring): refused with its error and message, nothing moved,
    and a bad file that is data kept in quarantine."""
    env = champion_env
    before = State.of(env)
    assert before.champion == "1" and len(before.ledger) == 1
    sent = build(Sender(env, tmp_path_factory.mktemp("outside")))
    kept = sent.file.read_bytes() if sent.file is not None and sent.file.is_file() else None

    with pytest.raises(error, match=message) as refused:
        run(env, sent, build.__name__)

    assert isinstance(refused.value, MlcycleError)  # the operator fails it without retries
    after = State.of(env)
    assert (after.champion, after.ledger) == (before.champion, before.ledger)
    if error is GateFailedError:  # the candidate stays registered as the challenger, unpromoted
        assert after.versions == (*before.versions, "2") and after.challenger == "2"
    else:
        assert after == before
    if isinstance(refused.value, UnreadableDataError | ValidationFailedError):
        assert sent.file is not None and kept is not None
        assert quarantined(env, sent.file), f"{sent.file} ({sent.how}) is not in quarantine"
        assert sent.file.read_bytes() == kept  # quarantine copies: what the user sent is untouched


def test_columns_the_spec_does_not_name_are_allowed_and_never_used(champion_env):
    """The contract has no expect_table_columns_to_match_set, so extra columns pass validation (an
    upstream may add columns before a spec uses them); the spec names the features, so they are
    never fitted on, not even a copy of the label (a leak that would otherwise look perfect)."""
    from mlcycle.core.spec import get_spec
    from mlcycle.flows import train as steps
    from mlcycle.store import registry

    env = champion_env
    spec = get_spec(MODEL)
    s = Sender(env, env.root)
    df = s.good()
    df["favourite_colour"] = "blue"
    df["churned_copy"] = df["churned"]
    sent = s.upload(df)
    info = run_info("extra-columns")

    m = steps.resolve(spec, info, lake_root=env.lake, as_of=today(), batch_uri=sent.conf["batch_uri"])
    assert steps.validate(spec, info, manifest_uri=m["manifest_uri"], lake_root=env.lake)["success"]
    t = steps.train(
        spec, info, env.mlc, manifest_uri=m["manifest_uri"], lake_root=env.lake, overrides={"max_iter": 20}
    )
    assert t["created"] and t["version"] == "2"
    model = registry.load_sklearn(env.mlc, MODEL, "2")
    assert list(model.feature_names_in_) == spec.features.all
    assert env.mlc.get_model_version(MODEL, "2").tags[steps.TAG_DATA_SHIFT] == "pass"


def test_after_bad_inputs_the_next_good_batch_trains_normally(champion_env):
    """Today's batch lands broken (a CSV named .parquet); a bad file named like yesterday's good
    batch is sent by batch_uri; then the fixed batch lands under today's name. The next run
    trains on the whole window, both good files included (quarantine matches bytes, not names),
    registers v2 after a passing data-shift check, and the gate decides as for any candidate."""
    from mlcycle.core.spec import get_spec
    from mlcycle.data import lake as lk
    from mlcycle.data.generators import generate_batch
    from mlcycle.flows import train as steps

    env, mlc = champion_env, champion_env.mlc
    spec = get_spec(MODEL)
    s = Sender(env, env.root)
    yesterday = Path(str(lk.Lake(env.lake, MODEL).batch_path(golden_end())))

    broken = s.land(s.good().to_csv(index=False).encode())
    with pytest.raises(UnreadableDataError, match="it is not a Parquet file"):
        run(env, broken, "broken-today")
    assert broken.file is not None and quarantined(env, broken.file)
    impostor = s.upload(generate_batch(MODEL, golden_end(), ROWS, corrupt=True), name=yesterday.name)
    with pytest.raises(ValidationFailedError, match=r"expect_column_values_to_be_between"):
        run(env, impostor, "impostor")
    assert State.of(env).champion == "1"

    fixed = s.land(s.good())
    assert impostor.file is not None and fixed.file is not None and quarantined(env, impostor.file)
    assert not quarantined(env, fixed.file) and not quarantined(env, yesterday)
    info = run_info("next-good-batch", reason="the fixed batch landed")
    m = steps.resolve(spec, info, lake_root=env.lake, as_of=today())
    window = [golden_end() - dt.timedelta(days=i) for i in reversed(range(GOLDEN_DAYS))]
    assert [Path(b).name for b in steps.read_manifest(m["manifest_uri"]).batches] == [
        *(f"{day.isoformat()}.parquet" for day in window),
        fixed.file.name,
    ]
    assert steps.validate(spec, info, manifest_uri=m["manifest_uri"], lake_root=env.lake)["success"]
    t = steps.train(spec, info, mlc, manifest_uri=m["manifest_uri"], lake_root=env.lake)
    assert t["created"] and t["version"] == "2"
    assert mlc.get_model_version(MODEL, "2").tags[steps.TAG_DATA_SHIFT] == "pass"
    e = steps.evaluate(spec, info, mlc, version="2", holdout_uri=t["holdout_uri"], lake_root=env.lake)
    assert e["champion"] is not None and e["champion"]["version"] == "1"
    outcome = steps.gate(spec, info, mlc, evaluation=e, lake_root=env.lake)
    verdict = lk.read_json(lk.Lake(env.lake, MODEL).run_file(info.key, lk.RunFile.VERDICT_JSON))
    assert verdict["bootstrap"] is False and verdict["champion_version"] == "1"
    assert outcome["passed"] is verdict["passed"]
    if not verdict["passed"]:
        # Refused on merit (v2 is not better than v1 on the same rows): a normal outcome too.
        with pytest.raises(GateFailedError, match=r"champion unchanged \(v1\)"):
            steps.promote(spec, info, mlc, verdict=outcome, ledger_uri=env.ledger_uri, lake_root=env.lake)
        assert State.of(env).champion == "1"
        return
    promoted = steps.promote(spec, info, mlc, verdict=outcome, ledger_uri=env.ledger_uri, lake_root=env.lake)
    assert promoted["promoted"] and State.of(env).champion == "2"
    assert State.of(env).ledger == (("1", "2", "promote"), (None, "1", "bootstrap"))  # newest first
