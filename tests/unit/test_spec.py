"""Model specs: the shipped ones parse; every kind of mistake is refused with a message
that names the file and the key at fault."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from mlcycle.core import settings
from mlcycle.core.errors import SpecError
from mlcycle.core.spec import (
    Direction,
    ModelSpec,
    Task,
    encode_target,
    estimator_problems,
    get_spec,
    load_spec,
    load_specs,
    parse_spec,
)

if TYPE_CHECKING:
    from pathlib import Path

SHIPPED = settings.specs_dir()


def churn_raw() -> dict[str, Any]:
    return yaml.safe_load((SHIPPED / "churn.yaml").read_text())


def write_spec(directory: Path, raw: Any, name: str | None = None) -> Path:
    """Write ``raw`` as YAML to ``<directory>/<name>.yaml`` (name defaults to ``raw['name']``)."""
    path = directory / f"{name or raw['name']}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_shipped_specs_parse():
    """The shipped specs load from the real include/models folder, sorted by name."""
    specs = load_specs(SHIPPED)
    assert [s.name for s in specs] == ["churn", "demand", "support_intent"]
    churn, demand, intent = specs
    assert churn.task is Task.CLASSIFICATION
    assert demand.task is Task.REGRESSION
    assert intent.task is Task.MULTICLASS
    assert intent.features.text == ["question"]
    assert intent.features.all[-1] == "question"  # numeric, categorical, then text
    assert churn.gate.primary_metric == "roc_auc"
    assert demand.data.split == "hash"
    assert churn.train_dag_id == "train_churn"
    assert churn.estimator.class_ == "sklearn.ensemble.HistGradientBoostingClassifier"
    assert "contract" in churn.features.categorical
    assert churn.features.all == [*churn.features.numeric, *churn.features.categorical]


def test_defaults_are_filled_in(tmp_path):
    """Optional keys get their documented defaults."""
    raw = churn_raw()
    for key in ("owner", "schedule", "tags"):
        raw.pop(key)
    for key in ("training_window_days", "holdout_fraction", "split", "rows_per_batch"):
        raw["data"].pop(key)
    spec = load_spec(write_spec(tmp_path, raw))
    assert spec.owner == "ml-platform"
    assert spec.schedule == "0 2 * * *"
    assert spec.data.training_window_days == 30
    assert spec.data.holdout_fraction == 0.2
    assert spec.data.split == "time"
    assert spec.gate.bootstrap_resamples == 200


def test_get_spec_finds_by_name_and_lists_known_models(tmp_path):
    """get_spec loads ``<name>.yaml``; an unknown name lists the models that exist."""
    assert get_spec("demand", SHIPPED).name == "demand"
    with pytest.raises(
        SpecError, match=r"no model spec .*nope\.yaml; known models: \['churn', 'demand', 'support_intent'\]"
    ):
        get_spec("nope", SHIPPED)


def _set(path: str, value: Any):
    def change(raw: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = raw
        for p in parents:
            node = node[p]
        node[last] = value

    return change


def _drop(path: str):
    def change(raw: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = raw
        for p in parents:
            node = node[p]
        del node[last]

    return change


# (case id, change to the valid churn spec, key the message must name, words of the reason)
BAD_SPECS = [
    (
        "unknown_threshold_metric",
        _set("gate.thresholds.bogus", {"min": 0.5}),
        "gate.thresholds.bogus",
        "unknown metric",
    ),
    ("missing_target", _drop("data.target"), "data.target", "required key is missing"),
    ("unknown_top_level_key", _set("colour", "red"), "colour", "unknown key"),
    ("unknown_nested_key", _set("data.windw", 3), "data.windw", "unknown key"),
    ("bad_cron", _set("schedule", "every night"), "schedule", "not a cron expression"),
    ("cron_four_fields", _set("schedule", "0 2 * *"), "schedule", "not a cron expression"),
    (
        "regression_metric_on_classification",
        _set("gate.thresholds.rmse", {"max": 1.0}),
        "gate.thresholds.rmse",
        "does not apply to classification",
    ),
    (
        "estimator_outside_sklearn",
        _set("estimator.class", "xgboost.XGBClassifier"),
        "estimator.class",
        "not a scikit-learn estimator path",
    ),
    (
        "estimator_arbitrary_callable",
        _set("estimator.class", "os.system"),
        "estimator.class",
        "not a scikit-learn",
    ),
    (
        "min_above_max",
        _set("gate.thresholds.roc_auc", {"min": 0.9, "max": 0.5}),
        "gate.thresholds.roc_auc",
        "above max",
    ),
    ("empty_bound", _set("gate.thresholds.roc_auc", {}), "gate.thresholds.roc_auc", "give min, max or both"),
    (
        "negative_max_regression",
        _set("gate.max_regression.roc_auc", -0.1),
        "gate.max_regression.roc_auc",
        "non-negative",
    ),
    ("bad_split", _set("data.split", "random"), "data.split", "'time' or 'hash'"),
    (
        "holdout_fraction_too_big",
        _set("data.holdout_fraction", 0.95),
        "data.holdout_fraction",
        "less than 0.9",
    ),
    ("no_features", _set("features", {"numeric": [], "categorical": []}), "features", "at least one feature"),
    (
        "feature_in_both_lists",
        _set("features.categorical", ["age", "region"]),
        "features",
        "listed more than once (numeric, categorical, text)",
    ),
]


@pytest.mark.parametrize(
    ("change", "key", "reason"), [c[1:] for c in BAD_SPECS], ids=[c[0] for c in BAD_SPECS]
)
def test_bad_spec_names_file_and_key(tmp_path, change, key, reason):
    """Each mistake raises SpecError naming the spec file, the dotted key and the reason."""
    raw = churn_raw()
    change(raw)
    path = write_spec(tmp_path, raw)
    with pytest.raises(SpecError) as err:
        load_spec(path)
    message = str(err.value)
    assert str(path) in message
    assert key in message, f"key {key!r} not named in:\n{message}"
    assert reason in message


def test_name_must_match_file_name(tmp_path):
    """A spec whose ``name`` differs from its file name is refused, naming both."""
    path = write_spec(tmp_path, churn_raw(), name="other")
    with pytest.raises(
        SpecError, match=r"other\.yaml:\n  name: is 'churn' but the file is other\.yaml"
    ) as err:
        load_spec(path)
    assert str(path) in str(err.value)


def test_invalid_model_name(tmp_path):
    """Names become DAG ids: upper case and dashes are refused."""
    raw = churn_raw()
    raw["name"] = "Churn-Model"
    path = write_spec(tmp_path, raw)
    with pytest.raises(SpecError, match=r"name: 'Churn-Model' is not a valid model name"):
        load_spec(path)


@pytest.mark.parametrize(
    ("estimator", "task", "words"),
    [
        (
            "sklearn.ensemble.RandomForestRegressor",
            "classification",
            "is a regressor but task is classification",
        ),
        ("sklearn.ensemble.RandomForestClassifier", "regression", "is a classifier but task is regression"),
    ],
)
def test_estimator_kind_must_match_task(tmp_path, estimator, task, words):
    """A regressor cannot serve a classification spec, nor the reverse."""
    raw = churn_raw()
    raw["estimator"] = {"class": estimator, "params": {}}
    if task == "regression":
        raw["task"] = "regression"
        raw["gate"] = {"primary_metric": "rmse", "thresholds": {"rmse": {"max": 10}}}
    path = write_spec(tmp_path, raw)
    with pytest.raises(SpecError, match=words) as err:
        load_spec(path)
    assert str(path) in str(err.value)


def test_feature_may_not_be_the_target(tmp_path):
    """Listing the target as a feature (label leakage) is refused."""
    raw = churn_raw()
    raw["features"]["numeric"].append("churned")
    with pytest.raises(SpecError, match=r"features: \['churned'\] are also the key, time or target column"):
        load_spec(write_spec(tmp_path, raw))


@pytest.mark.parametrize("schedule", ["@daily", "@hourly", "*/15 * * * *", "0 2 * * 1-5", "30 2 1,15 * MON"])
def test_valid_schedules_accepted(tmp_path, schedule):
    """Cron presets and five-field expressions are accepted unchanged."""
    raw = churn_raw()
    raw["schedule"] = schedule
    assert load_spec(write_spec(tmp_path, raw)).schedule == schedule


@pytest.mark.parametrize("schedule", ["every night at two am", "61 2 * * *", "0 25 * * *"])
def test_five_fields_that_are_not_cron_are_refused(tmp_path, schedule):
    """Five words, or out-of-range numbers, are not a cron expression: refuse them at spec load.

    Otherwise the spec loads and the mistake only surfaces when Airflow validates the
    DAG's timetable ("... is not acceptable"), far from the spec file and key.
    """
    raw = churn_raw()
    raw["schedule"] = schedule
    path = write_spec(tmp_path, raw)
    with pytest.raises(SpecError, match=r"schedule: .* is not a cron expression") as err:
        load_spec(path)
    assert str(path) in str(err.value)


def test_metric_direction_is_known_per_metric():
    """The gate relies on these directions: AUC higher is better, losses lower."""
    from mlcycle.core.spec import METRICS

    assert METRICS["roc_auc"] == ({Task.CLASSIFICATION}, Direction.HIGHER)
    assert METRICS["log_loss"] == ({Task.CLASSIFICATION, Task.MULTICLASS}, Direction.LOWER)
    assert METRICS["macro_f1"] == ({Task.MULTICLASS}, Direction.HIGHER)
    assert METRICS["rmse"] == ({Task.REGRESSION}, Direction.LOWER)
    assert METRICS["r2"] == ({Task.REGRESSION}, Direction.HIGHER)


def test_invalid_yaml_names_file(tmp_path):
    """Unparseable YAML is a SpecError naming the file, not a yaml traceback."""
    path = tmp_path / "churn.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML") as err:
        load_spec(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    ("text", "kind"), [("- a\n- b\n", "list"), ("just a string\n", "str"), ("", "NoneType")]
)
def test_non_mapping_yaml_names_file(tmp_path, text, kind):
    """A file that is YAML but not a mapping is refused with the type it holds."""
    path = tmp_path / "churn.yaml"
    path.write_text(text)
    with pytest.raises(SpecError, match=f"must hold a YAML mapping, got {kind}") as err:
        load_spec(path)
    assert str(path) in str(err.value)


def test_missing_file(tmp_path):
    """A missing spec file says so and points at MLCYCLE_SPECS_DIR."""
    with pytest.raises(SpecError, match=r"does not exist; add it or fix MLCYCLE_SPECS_DIR"):
        load_spec(tmp_path / "ghost.yaml")


def test_parse_spec_accepts_a_dict_directly(tmp_path):
    """parse_spec validates an in-memory mapping against the path it claims to come from."""
    spec = parse_spec(churn_raw(), tmp_path / "churn.yaml")
    assert spec.name == "churn"
    with pytest.raises(SpecError, match=r"the file is x\.yaml"):
        parse_spec(churn_raw(), tmp_path / "x.yaml")


def test_load_specs_reports_every_bad_file_together(tmp_path):
    """One run of load_specs names every broken spec, not only the first."""
    good = churn_raw()
    write_spec(tmp_path, good)
    bad_one = copy.deepcopy(good)
    bad_one["name"] = "alpha"
    bad_one["schedule"] = "never"
    write_spec(tmp_path, bad_one)
    bad_two = copy.deepcopy(good)
    bad_two["name"] = "beta"
    del bad_two["contract"]
    write_spec(tmp_path, bad_two)
    with pytest.raises(SpecError) as err:
        load_specs(tmp_path)
    message = str(err.value)
    assert str(tmp_path / "alpha.yaml") in message
    assert "schedule" in message
    assert str(tmp_path / "beta.yaml") in message
    assert "contract: required key is missing" in message
    assert str(tmp_path / "churn.yaml") not in message


def test_load_specs_missing_folder(tmp_path):
    """A missing spec folder points at MLCYCLE_SPECS_DIR."""
    with pytest.raises(SpecError, match="does not exist; set MLCYCLE_SPECS_DIR"):
        load_specs(tmp_path / "nowhere")


def test_spec_is_immutable():
    """Specs are frozen: code cannot change a parsed policy by accident."""
    spec = load_specs(SHIPPED)[0]
    with pytest.raises(ValueError, match="frozen"):
        spec.name = "other"  # type: ignore[misc]


# --- data.labels, the target encoding and the estimator check ------------------------------------


@pytest.mark.parametrize(
    ("yaml_labels", "task", "key", "reason"),
    [
        (
            "{No: 0, Yes: 1}",
            "classification",
            "data.labels",
            "YAML read ['False', 'True'] as booleans; quote",
        ),
        ("{'No': 0, 'Yes': 2}", "classification", "data.labels", "map to something else than 0 or 1"),
        ("{'No': 0, 'Nope': 0}", "classification", "data.labels", "no label maps to class [1]"),
        ("{'No': 0, 'Yes': 1}", "regression", "data.labels", "a regression target is a number"),
    ],
    ids=["unquoted_yes_no", "class_2", "no_positive_class", "labels_on_a_regressor"],
)
def test_bad_labels_are_refused(tmp_path, yaml_labels, task, key, reason):
    """``data.labels`` maps every raw target value to 0 or 1, both used, for classifiers only; the
    YAML trap (bare Yes/No read as booleans) is named with the fix."""
    raw = churn_raw()
    if task == "regression":
        raw["task"] = "regression"
        raw["estimator"] = {"class": "sklearn.ensemble.RandomForestRegressor", "params": {}}
        raw["gate"] = {"primary_metric": "rmse"}
        raw["monitor"].pop("max_performance_drop", None)
    raw["data"]["labels"] = "__LABELS__"
    path = write_spec(tmp_path, raw)
    path.write_text(path.read_text().replace("__LABELS__", yaml_labels))
    with pytest.raises(SpecError) as err:
        load_spec(path)
    message = str(err.value)
    assert f"{key}: " in message and reason in message, message


def test_misspelled_key_names_the_closest_valid_one(tmp_path):
    """A typo in a key is refused with the key it most likely meant, in any section."""
    raw = churn_raw()
    raw["data"]["traning_window_days"] = raw["data"].pop("training_window_days")
    raw["gate"]["thresholds"]["roc_auc"] = {"mni": 0.7}
    with pytest.raises(SpecError) as err:
        load_spec(write_spec(tmp_path, raw))
    message = str(err.value)
    assert "data.traning_window_days: unknown key; did you mean 'training_window_days'?" in message
    assert "gate.thresholds.roc_auc.mni: unknown key; did you mean 'min'?" in message


def _labelled(labels: dict[str, int] | None) -> ModelSpec:
    raw = churn_raw()
    raw["data"]["labels"] = labels
    return ModelSpec.model_validate(raw)


@pytest.mark.parametrize(
    ("labels", "values", "expected"),
    [
        (None, [0, 1, 1], [0, 1, 1]),
        (None, [True, False], [1, 0]),
        (None, [1.0, None, 0.0], [1.0, None, 0.0]),
        ({"No": 0, "Yes": 1}, ["Yes", "No", "No"], [1, 0, 0]),
        ({"N": 0, "No": 0, "Y": 1}, ["Y", "N", "No", None], [1.0, 0.0, 0.0, None]),
    ],
)
def test_encode_target_gives_classes_0_and_1(labels, values, expected):
    """The target becomes 0/1 (int64, or float64 keeping missing labels missing)."""
    import pandas as pd

    dtype = "float64" if None in values else "int64"
    pd.testing.assert_series_equal(
        encode_target(_labelled(labels), pd.Series(values)), pd.Series(expected, dtype=dtype)
    )


@pytest.mark.parametrize(
    ("labels", "values", "message"),
    [
        (
            None,
            ["No", "Yes"],
            r"holds \['No', 'Yes'\], not the classes 0 and 1; .* labels: \{'No': 0, 'Yes': 1\}",
        ),
        (None, [0, 1, 2], r"holds \[0, 1, 2\], not the classes 0 and 1"),
        ({"No": 0, "Yes": 1}, ["Yes", "yes", "No"], r"holds \['yes'\], which data\.labels does not map"),
    ],
)
def test_encode_target_refuses_values_it_cannot_map(labels, values, message):
    """A value neither 0/1 nor in ``data.labels`` is refused, naming it and the key to set."""
    import pandas as pd

    with pytest.raises(SpecError, match=message):
        encode_target(_labelled(labels), pd.Series(values))


@pytest.mark.parametrize(
    ("estimator", "problem"),
    [
        ({"class": "sklearn.ensemble.RandomForrestClassifier"}, "did you mean 'RandomForestClassifier'?"),
        (
            {"class": "sklearn.ensembel.RandomForestClassifier"},
            "module 'sklearn.ensembel' does not exist; did you mean 'sklearn.ensemble'?",
        ),
        (
            {"params": {"n_estimator": 5}},
            "estimator.params.n_estimator: RandomForestClassifier takes no parameter 'n_estimator'; did you mean 'n_estimators'?",
        ),
        (
            {"params": {"n_estimators": "many"}},
            "The 'n_estimators' parameter of RandomForestClassifier must be an int",
        ),
        ({"class": "sklearn.cluster.KMeansClassifier"}, "sklearn.cluster has no class 'KMeansClassifier'"),
        ({"class": "sklearn.svm.SVC"}, "SVC is not a classifier with predict_proba"),
    ],
)
def test_estimator_problems_name_the_closest_valid_name(estimator, problem):
    """The estimator is imported and built from its params without training; each mistake names the fix."""
    raw = churn_raw()
    raw["estimator"] = {"class": "sklearn.ensemble.RandomForestClassifier", "params": {}, **estimator}
    problems = estimator_problems(ModelSpec.model_validate(raw))
    assert len(problems) == 1 and problem in problems[0], problems


def test_shipped_estimators_build():
    """Every shipped spec names an estimator that builds with its params."""
    assert [estimator_problems(s) for s in load_specs(SHIPPED)] == [[], [], []]


@pytest.mark.parametrize(
    ("section", "key", "value", "retrains"),
    [
        ("data", "rows_per_batch", 5, False),  # the demo generator's batch size
        ("data", "generator", "demand", False),
        ("data", "training_window_days", 7, False),  # the data digest covers what it selects
        ("data", "split_seed", 5, True),
        ("data", "holdout_fraction", 0.3, True),
        ("data", "target", "other", True),
    ],
)
def test_spec_digest_changes_only_with_what_changes_a_model(section, key, value, retrains):
    """The skip rule ("identical data, same spec") must not retrain for a demo setting, and must
    retrain when the split or the columns change."""
    from mlcycle.core.spec import load_spec, spec_digest

    spec = load_spec(settings.specs_dir() / "churn.yaml")
    part = getattr(spec, section)
    changed = spec.model_copy(update={section: part.model_copy(update={key: value})})
    assert (spec_digest(changed) != spec_digest(spec)) is retrains


@pytest.mark.parametrize(
    ("section", "key", "value", "says"),
    [
        ("monitor", "chunk_period", "6 hours", "is not a period; use a count and a unit of min, h, D or W"),
        ("monitor", "chunk_rows", 10, "greater than or equal to 100"),
        ("monitor", "band_k", 0, "greater than 0"),
        ("scoring", "decision_threshold", 1.5, "less than 1"),
    ],
)
def test_bad_monitoring_and_threshold_settings_are_refused(tmp_path, section, key, value, says):
    raw = churn_raw()
    raw.setdefault(section, {})[key] = value
    with pytest.raises(SpecError) as err:
        load_spec(write_spec(tmp_path, raw))
    assert f"{section}.{key}" in str(err.value) and says in str(err.value), str(err.value)


def test_the_decision_threshold_reaches_every_thresholded_metric(tmp_path):
    import numpy as np
    from sklearn.metrics import accuracy_score, f1_score

    from mlcycle.ml import evaluation as ev

    raw = churn_raw()
    raw.setdefault("scoring", {})["decision_threshold"] = 0.3
    spec = load_spec(write_spec(tmp_path, raw))
    assert spec.scoring.decision_threshold == 0.3
    rng = np.random.default_rng(0)
    s = rng.random(2000)
    y = (rng.random(2000) < s).astype(int)
    got = ev.all_metrics(spec.task, y, s, threshold=spec.scoring.decision_threshold)
    assert got["accuracy"] == pytest.approx(accuracy_score(y, s >= 0.3))
    assert got["f1"] == pytest.approx(f1_score(y, s >= 0.3))
    assert got["accuracy"] != pytest.approx(accuracy_score(y, s >= 0.5))
