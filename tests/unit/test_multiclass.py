"""Multi-class classification (``task: multiclass``): the metrics equal scikit-learn's, the spec
refuses what cannot work, the gate judges every class's recall against the champion, the paired
bootstrap reads macro F1, a tabular model trains, converts to ONNX with every class probability
in parity and scores with string classes, and training refuses a window that lacks a class."""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from sklearn import metrics as skm
from threadpoolctl import threadpool_limits

from mlcycle.core.errors import SpecError
from mlcycle.core.spec import (
    GateSpec,
    ModelSpec,
    Task,
    encode_target,
    higher_is_better,
    load_spec,
    metric_info,
    parse_spec,
    task_metrics,
)
from mlcycle.ml import evaluation as ev
from mlcycle.ml import onnx_twin, scoring
from mlcycle.ml import training as tr
from mlcycle.ml.gate import Measurement, Outcome, Verdict, decide

# Listed out of alphabetical order on purpose: the model's columns follow the sorted order.
CLASSES = ["technical", "billing", "delivery", "account"]
SORTED = sorted(CLASSES)  # ['account', 'billing', 'delivery', 'technical']
MULTI_METRICS = ["accuracy", "balanced_accuracy", "log_loss", "macro_f1", "roc_auc_ovr", "weighted_f1"]
NAME = "mc_tab"


def raw_spec(**changes: Any) -> dict[str, Any]:
    """A tabular multi-class spec (numeric + categorical, no text) as YAML would load it;
    ``changes`` replace whole top-level sections."""
    raw: dict[str, Any] = {
        "name": NAME,
        "description": "Tabular multi-class test model.",
        "task": "multiclass",
        "contract": f"{NAME}.json",
        "data": {
            "key_column": "ticket_id",
            "time_column": "created_at",
            "target": "intent",
            "classes": list(CLASSES),
            "holdout_fraction": 0.2,
            "split": "time",
        },
        "features": {"numeric": ["x1", "x2"], "categorical": ["region"], "numeric_scaling": "standard"},
        "estimator": {"class": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 500}},
        "gate": {
            "primary_metric": "macro_f1",
            "thresholds": {"macro_f1": {"min": 0.3}},
            "max_regression": {"macro_f1": 0.02},
            "max_class_recall_drop": 0.05,
        },
    }
    raw.update(copy.deepcopy(changes))
    return raw


def spec_of(raw: dict[str, Any]) -> ModelSpec:
    return parse_spec(raw, Path(f"{raw['name']}.yaml"))


def spec_error(raw: dict[str, Any]) -> str:
    """The message of the ``SpecError`` that ``raw`` must raise."""
    with pytest.raises(SpecError) as err:
        spec_of(raw)
    return str(err.value)


def with_(section: str, **fields: Any) -> dict[str, Any]:
    """``raw_spec()`` with some keys of one section changed (None removes the key)."""
    raw = raw_spec()
    raw[section] = {**raw[section], **fields}
    raw[section] = {k: v for k, v in raw[section].items() if v is not None}
    return raw


def frame(n: int = 2000, seed: int = 0, classes: list[str] = CLASSES) -> pd.DataFrame:
    """``n`` rows, a minute apart, whose class depends on two numbers and a region (so every model
    learns something); about 5 % of x1 and of region are missing. Imbalanced: the last class is rare."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    region = rng.choice(np.array(["north", "south", "east"], dtype=object), n)
    k = len(classes)
    base = np.c_[2 * x1, -2 * x1, 2 * x2, -2 * x2 + 1.5 * (region == "east")][:, :k]
    base[:, -1] -= 0.8  # the rare class
    target = np.asarray(classes, dtype=object)[(base + rng.gumbel(size=(n, k))).argmax(axis=1)]
    x1[rng.random(n) < 0.05] = np.nan
    region[rng.random(n) < 0.05] = None
    return pd.DataFrame(
        {
            "ticket_id": [f"t{i:05d}" for i in range(n)],
            "created_at": pd.Timestamp("2026-03-01") + pd.to_timedelta(np.arange(n), unit="min"),
            "x1": x1,
            "x2": x2,
            "region": region,
            "intent": target,
        }
    )


def random_proba(n: int, k: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).dirichlet(np.ones(k), n)


def informative_proba(
    y: np.ndarray, classes: list[str], seed: int, strength: float = 2.0, bias: float = 0.0
) -> np.ndarray:
    """Probabilities (rows sum to 1) leaning towards the true class by ``strength`` in logits,
    and towards the first class by ``bias`` (a model that favours the majority)."""
    rng = np.random.default_rng(seed)
    onehot = (y[:, None] == np.asarray(classes, dtype=object)[None, :]).astype(float)
    logits = strength * onehot + rng.normal(0, 1, (len(y), len(classes)))
    logits[:, 0] += bias
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# --- 1. the metrics equal scikit-learn's ---------------------------------------------------------


def metric_cases() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(11)
    balanced = rng.choice(np.asarray(SORTED, dtype=object), 300)
    # Imbalanced: 'account' 70 %, 'technical' 3 %.
    imbalanced = rng.choice(np.asarray(SORTED, dtype=object), 500, p=[0.7, 0.17, 0.1, 0.03])
    return {
        "balanced": (balanced, informative_proba(balanced, SORTED, 1)),
        "imbalanced": (imbalanced, informative_proba(imbalanced, SORTED, 2, strength=1.5, bias=1.0)),
        "uninformative": (balanced, random_proba(len(balanced), len(SORTED), 3)),
    }


@pytest.mark.parametrize("case", ["balanced", "imbalanced", "uninformative"])
def test_multiclass_metrics_equal_sklearn(case):
    """Every multi-class metric, per-class recall and precision included, is scikit-learn's own
    number on the same string labels and probability columns (sorted class order)."""
    y, proba = metric_cases()[case]
    assert all((y == c).any() for c in SORTED)
    got = ev.all_metrics(Task.MULTICLASS, y, proba, classes=SORTED)
    assert set(got) == set(MULTI_METRICS) | {f"{k}.{c}" for c in SORTED for k in ("recall", "precision")}
    pred = np.asarray(SORTED, dtype=object)[proba.argmax(axis=1)]
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert got["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert got["macro_f1"] == pytest.approx(skm.f1_score(y, pred, labels=SORTED, average="macro"))
    assert got["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert got["weighted_f1"] == pytest.approx(skm.f1_score(y, pred, average="weighted"))
    assert got["log_loss"] == pytest.approx(skm.log_loss(y, proba, labels=SORTED))
    assert got["roc_auc_ovr"] == pytest.approx(
        skm.roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=SORTED)
    )
    for c in SORTED:
        assert got[f"recall.{c}"] == pytest.approx(skm.recall_score(y, pred, labels=[c], average="macro"))
        assert got[f"precision.{c}"] == pytest.approx(
            skm.precision_score(y, pred, labels=[c], average="macro", zero_division=np.nan), nan_ok=True
        )
    for name, value in got.items():
        assert metric_info(name) is not None, name
        assert higher_is_better(name) is (name != "log_loss")
        if not name.startswith("precision."):
            assert math.isfinite(value), name


def test_imbalanced_case_tells_macro_from_weighted_and_balanced_from_plain_accuracy():
    """On the imbalanced case the averages really differ (so the equalities above test something)."""
    y, proba = metric_cases()["imbalanced"]
    got = ev.all_metrics(Task.MULTICLASS, y, proba, classes=SORTED)
    assert abs(got["macro_f1"] - got["weighted_f1"]) > 0.05
    assert abs(got["balanced_accuracy"] - got["accuracy"]) > 0.05


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true:UserWarning")
def test_a_class_absent_from_y_has_nan_recall_and_auc_averages_the_present_classes():
    """Without rows of 'delivery', its recall is undefined (NaN, never 0); roc_auc_ovr is the mean
    of the present classes' one-vs-rest AUCs; balanced accuracy averages the present classes;
    log loss still knows all four columns; the rest equals scikit-learn."""
    rng = np.random.default_rng(5)
    present = [c for c in SORTED if c != "delivery"]
    y = rng.choice(np.asarray(present, dtype=object), 400, p=[0.5, 0.35, 0.15])
    proba = informative_proba(y, SORTED, 6, strength=1.5)
    pred = np.asarray(SORTED, dtype=object)[proba.argmax(axis=1)]
    assert (pred == "delivery").any()  # predicted though absent: its precision is 0, not NaN
    got = ev.all_metrics(Task.MULTICLASS, y, proba, classes=SORTED)
    assert math.isnan(got["recall.delivery"])
    assert got["precision.delivery"] == 0.0
    for c in present:
        assert got[f"recall.{c}"] == pytest.approx(skm.recall_score(y, pred, labels=[c], average="macro"))
        assert got[f"precision.{c}"] == pytest.approx(
            skm.precision_score(y, pred, labels=[c], average="macro", zero_division=np.nan)
        )
    aucs = [skm.roc_auc_score(y == c, proba[:, SORTED.index(c)]) for c in present]
    assert got["roc_auc_ovr"] == pytest.approx(np.mean(aucs))
    assert got["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert got["balanced_accuracy"] == pytest.approx(
        np.mean([skm.recall_score(y, pred, labels=[c], average="macro") for c in present])
    )
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert got["log_loss"] == pytest.approx(skm.log_loss(y, proba, labels=SORTED))
    # 'delivery' is predicted (false positives), so scikit-learn's macro average counts it, with F1 0
    assert got["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro", zero_division=0))
    assert got["weighted_f1"] == pytest.approx(skm.f1_score(y, pred, average="weighted", zero_division=0))


def test_a_class_neither_present_nor_predicted_does_not_lower_macro_f1():
    """A perfect model on rows without 'delivery' (a small holdout, a slice): no metric may count
    the absent, never-predicted class as a score of 0. macro_f1 is scikit-learn's
    ``f1_score(average="macro")`` (over the classes in y or predicted), 1.0 here, like
    balanced_accuracy and roc_auc_ovr, which average the present classes."""
    y = np.asarray(["account", "billing", "technical"] * 10, dtype=object)
    proba = np.where(y[:, None] == np.asarray(SORTED, dtype=object)[None, :], 0.925, 0.025)
    pred = np.asarray(SORTED, dtype=object)[proba.argmax(axis=1)]
    assert (pred == y).all()
    got = ev.all_metrics(Task.MULTICLASS, y, proba, classes=SORTED)
    assert got["accuracy"] == got["balanced_accuracy"] == got["roc_auc_ovr"] == 1.0
    assert got["weighted_f1"] == pytest.approx(1.0)
    assert math.isnan(got["recall.delivery"]) and math.isnan(got["precision.delivery"])
    assert got["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro")) == 1.0


def test_a_class_never_predicted_has_nan_precision():
    y = np.asarray(["account", "billing", "delivery", "technical"] * 5, dtype=object)
    proba = np.tile([0.4, 0.3, 0.2, 0.1], (len(y), 1))  # always 'account'
    got = ev.all_metrics(Task.MULTICLASS, y, proba, classes=SORTED)
    assert got["recall.account"] == 1.0 and got["recall.billing"] == 0.0
    assert math.isnan(got["precision.billing"]) and got["precision.account"] == 0.25


def test_string_dtypes_of_y_give_the_same_metrics():
    """The holdout's target may come back as numpy unicode or pandas' string dtype."""
    y, proba = metric_cases()["imbalanced"]
    expected = ev.all_metrics(Task.MULTICLASS, y, proba, classes=SORTED)
    for other in (y.astype(str), pd.Series(y, dtype="string"), pd.Series(y, dtype=object)):
        got = ev.all_metrics(Task.MULTICLASS, other, proba, classes=SORTED)
        assert got == pytest.approx(expected, nan_ok=True)


def test_multiclass_scores_need_their_classes_and_refuse_binary_metrics():
    y, proba = metric_cases()["balanced"]
    with pytest.raises(ValueError, match="classes"):
        ev.metric_value("macro_f1", y, proba)
    with pytest.raises(KeyError, match="not a multi-class metric"):
        ev.metric_value("roc_auc", y, proba, classes=SORTED)


def test_score_shift_reads_the_class_the_champion_chooses():
    champion = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    candidate = np.array([[0.5, 0.4, 0.1], [0.1, 0.1, 0.8]])
    np.testing.assert_allclose(ev.score_shift(candidate, champion), [-0.2, 0.2])


def test_slice_metrics_of_multiclass_scores_are_the_metric_on_each_slice():
    y, proba = metric_cases()["balanced"]
    other = random_proba(len(y), len(SORTED), 9)
    region = np.where(np.arange(len(y)) % 3 == 0, "east", "west")
    rows = ev.slice_metrics(
        "macro_f1",
        y,
        pd.DataFrame({"region": region}),
        columns=["region"],
        candidate=proba,
        champion=other,
        min_rows=50,
        classes=SORTED,
    )
    assert [(r["value"], r["rows"]) for r in rows] == [("west", 200), ("east", 100)]
    for r in rows:
        mask = region == r["value"]
        assert r["candidate"] == pytest.approx(
            ev.metric_value("macro_f1", y[mask], proba[mask], classes=SORTED)
        )
        assert r["champion"] == pytest.approx(
            ev.metric_value("macro_f1", y[mask], other[mask], classes=SORTED)
        )


# --- 2. spec validation ----------------------------------------------------------------------------


def test_the_tabular_multiclass_spec_parses():
    spec = spec_of(raw_spec())
    assert spec.task is Task.MULTICLASS and spec.task.classifies
    assert spec.data.classes == CLASSES
    assert ev.classes_of(spec) == SORTED
    assert task_metrics(Task.MULTICLASS) == MULTI_METRICS


def test_the_shipped_multiclass_spec_parses():
    spec = load_spec(Path(__file__).resolve().parents[2] / "include" / "models" / "support_intent.yaml")
    assert spec.task is Task.MULTICLASS
    assert spec.gate.max_class_recall_drop == 0.05
    assert ev.classes_of(spec) == sorted(spec.data.classes)


def test_multiclass_without_classes_names_data_classes():
    message = spec_error(with_("data", classes=None))
    assert "data.classes: a multi-class target needs its classes listed" in message


@pytest.mark.parametrize(
    ("classes", "says"),
    [
        (["billing", "technical"], r"are 2 classes; a multi-class target needs at least 3"),
        (["billing"], r"are 1 classes; a multi-class target needs at least 3"),
        (["billing", "tech support", "delivery"], r"\['tech support'\] cannot name metrics and columns"),
        (["billing", "tech.support", "delivery"], r"\['tech.support'\] cannot name metrics and columns"),
        (["billing", "delivery", "billing"], r"\['billing'\] are listed twice"),
    ],
)
def test_bad_classes_are_refused(classes, says):
    message = spec_error(with_("data", classes=classes))
    assert "data.classes" in message
    assert re.search(says, message), message


def test_classes_from_a_yaml_file_with_a_space_are_refused(tmp_path):
    raw = raw_spec()
    raw["data"]["classes"] = ["billing", "tech support", "delivery"]
    path = tmp_path / f"{NAME}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(SpecError, match=r"data\.classes: \['tech support'\] cannot name metrics") as err:
        load_spec(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    ("gate", "key"),
    [
        ({"primary_metric": "roc_auc"}, "gate.primary_metric"),
        ({"primary_metric": "macro_f1", "thresholds": {"f1": {"min": 0.5}}}, "gate.thresholds.f1"),
        ({"primary_metric": "macro_f1", "max_regression": {"brier": 0.01}}, "gate.max_regression.brier"),
    ],
)
def test_a_binary_metric_on_a_multiclass_spec_lists_the_multiclass_metrics(gate, key):
    message = spec_error(raw_spec(gate=gate))
    metric = key.rsplit(".", 1)[1] if key != "gate.primary_metric" else "roc_auc"
    assert f"{key}: {metric} does not apply to multiclass" in message
    assert str(MULTI_METRICS) in message
    assert "recall.<class>, precision.<class>" in message


def test_a_per_class_metric_of_an_unknown_class_names_data_classes():
    gate = {"primary_metric": "macro_f1", "thresholds": {"recall.unknown_class": {"min": 0.5}}}
    message = spec_error(raw_spec(gate=gate))
    assert "gate.thresholds.recall.unknown_class" in message
    assert "'unknown_class' is not one of data.classes" in message
    assert str(CLASSES) in message
    message = spec_error(raw_spec(gate={"primary_metric": "precision.refunds"}))
    assert "gate.primary_metric: 'refunds' is not one of data.classes" in message


def test_per_class_metrics_of_listed_classes_are_accepted():
    gate = {
        "primary_metric": "recall.billing",
        "thresholds": {"recall.billing": {"min": 0.6}, "precision.account": {"min": 0.5}},
        "max_regression": {"recall.billing": 0.02, "macro_f1": 0.01},
        "min_improvement": {"precision.technical": 0.0},
    }
    spec = spec_of(raw_spec(gate=gate))
    assert spec.gate.thresholds["recall.billing"].min == 0.6
    assert spec.gate.max_regression["recall.billing"] == 0.02
    assert higher_is_better("recall.billing") and higher_is_better("precision.account")
    assert metric_info("recall.tech support") is None


def test_a_per_class_metric_on_a_binary_spec_is_refused():
    raw = raw_spec(
        task="classification", gate={"primary_metric": "roc_auc", "thresholds": {"recall.yes": {"min": 0.5}}}
    )
    raw["data"] = {k: v for k, v in raw["data"].items() if k != "classes"}
    message = spec_error(raw)
    assert "gate.thresholds.recall.yes: recall.yes does not apply to classification" in message


def test_max_class_recall_drop_on_a_binary_spec_is_refused():
    raw = raw_spec(task="classification", gate={"primary_metric": "roc_auc", "max_class_recall_drop": 0.05})
    raw["data"] = {k: v for k, v in raw["data"].items() if k != "classes"}
    message = spec_error(raw)
    assert "gate.max_class_recall_drop: per-class recall needs task: multiclass" in message


def test_classes_on_a_binary_spec_are_refused():
    raw = raw_spec(task="classification", gate={"primary_metric": "roc_auc"})
    message = spec_error(raw)
    assert "data.classes: only a multi-class target lists classes" in message


def test_labels_on_a_multiclass_spec_are_refused():
    message = spec_error(with_("data", labels={"No": 0, "Yes": 1}))
    assert "data.labels: labels map a binary target to 0/1" in message
    assert "lists data.classes instead" in message


def test_encode_target_keeps_listed_classes_as_text():
    spec = spec_of(raw_spec())
    out = encode_target(spec, pd.Series(["billing", None, "account"], dtype=object))
    assert out.iloc[0] == "billing" and out.iloc[2] == "account" and pd.isna(out.iloc[1])
    out = encode_target(spec, pd.Series(["billing", "account"], dtype="string"))
    assert out.tolist() == ["billing", "account"]


def test_encode_target_refuses_a_value_outside_data_classes():
    spec = spec_of(raw_spec())
    with pytest.raises(SpecError) as err:
        encode_target(spec, pd.Series(["billing", "refunds", "account", "refunds"]))
    message = str(err.value)
    assert "the target 'intent' holds ['refunds'], which data.classes does not list" in message
    assert f"it lists {CLASSES}" in message
    assert "add them to data.classes" in message


# --- 3. the gate --------------------------------------------------------------------------------


def policy(**fields: Any) -> GateSpec:
    fields.setdefault("primary_metric", "macro_f1")
    fields.setdefault("max_class_recall_drop", 0.05)
    return GateSpec.model_validate(fields)


def measure(version: str, recalls: dict[str, float], **metrics: float) -> Measurement:
    return Measurement(
        version=version,
        metrics={"macro_f1": 0.8, **metrics, **{f"recall.{c}": r for c, r in recalls.items()}},
    )


def rule(verdict: Verdict, name: str):
    found = [r for r in verdict.rules if r.name == name]
    assert len(found) == 1, f"expected one rule {name!r}, have {[r.name for r in verdict.rules]}"
    return found[0]


def class_rules(verdict: Verdict) -> dict[str, Outcome]:
    return {r.name: r.outcome for r in verdict.rules if r.kind == "class"}


CHAMPION_RECALLS = {"account": 0.80, "billing": 0.70, "delivery": 0.60, "technical": 0.90}


def test_a_class_whose_recall_drops_too_far_fails_its_own_rule_only():
    candidate = {**CHAMPION_RECALLS, "billing": 0.60, "technical": 0.95}  # billing -0.10
    v = decide("m", policy(), measure("2", candidate), measure("1", CHAMPION_RECALLS))
    assert class_rules(v) == {
        "class:recall.account": Outcome.PASS,
        "class:recall.billing": Outcome.FAIL,
        "class:recall.delivery": Outcome.PASS,
        "class:recall.technical": Outcome.PASS,
    }
    r = rule(v, "class:recall.billing")
    assert r.observed == pytest.approx(-0.10)
    assert r.limit == 0.05
    assert "'billing'" in r.detail and "max_class_recall_drop" in r.detail
    assert v.passed is False
    assert [f.name for f in v.failed_rules] == ["class:recall.billing"]
    assert v.summary().startswith("FAIL") and "billing" in v.summary()


def test_recalls_within_the_allowed_drop_pass_every_class():
    candidate = {"account": 0.85, "billing": 0.66, "delivery": 0.61, "technical": 0.90}  # billing -0.04
    v = decide("m", policy(), measure("2", candidate), measure("1", CHAMPION_RECALLS))
    assert set(class_rules(v).values()) == {Outcome.PASS}
    assert len(class_rules(v)) == 4
    assert rule(v, "class:recall.billing").observed == pytest.approx(-0.04)
    assert rule(v, "class:recall.account").observed == pytest.approx(0.05)
    assert v.passed is True


def test_a_drop_of_exactly_the_limit_passes():
    """0.75 vs 0.80 is 0.05000000000000004 in floats: still within 0.05."""
    candidate = {**CHAMPION_RECALLS, "account": 0.75}
    v = decide("m", policy(), measure("2", candidate), measure("1", CHAMPION_RECALLS))
    assert rule(v, "class:recall.account").outcome is Outcome.PASS


@pytest.mark.parametrize("side", ["candidate", "champion", "both"])
def test_a_class_with_nan_recall_is_skipped_not_failed(side):
    nan = float("nan")
    cand = {**CHAMPION_RECALLS, "delivery": 0.0 if side == "champion" else nan}
    champ = {**CHAMPION_RECALLS, "delivery": nan if side != "candidate" else 0.9}
    v = decide("m", policy(), measure("2", cand), measure("1", champ))
    assert rule(v, "class:recall.delivery").outcome is Outcome.SKIPPED
    assert {n: o for n, o in class_rules(v).items() if n != "class:recall.delivery"} == {
        f"class:recall.{c}": Outcome.PASS for c in ("account", "billing", "technical")
    }
    assert v.passed is True


def test_without_a_champion_every_class_rule_is_skipped():
    candidate = {**CHAMPION_RECALLS, "billing": 0.1}
    v = decide("m", policy(thresholds={"macro_f1": {"min": 0.5}}), measure("1", candidate), None)
    assert class_rules(v) == {f"class:recall.{c}": Outcome.SKIPPED for c in SORTED}
    assert v.bootstrap is True and v.passed is True


def test_without_max_class_recall_drop_no_class_rules():
    p = policy(max_class_recall_drop=None)
    v = decide("m", p, measure("2", {**CHAMPION_RECALLS, "billing": 0.0}), measure("1", CHAMPION_RECALLS))
    assert class_rules(v) == {}


@pytest.mark.parametrize(("candidate", "passed"), [(0.69, True), (0.68, True), (0.6799, False), (0.75, True)])
def test_per_class_recall_regression_goes_through_max_regression(candidate, passed):
    """``max_regression: {recall.billing: 0.02}``: higher is better, so a drop beyond 0.02 fails."""
    p = policy(max_class_recall_drop=None, max_regression={"recall.billing": 0.02})
    v = decide(
        "m",
        p,
        measure("2", {**CHAMPION_RECALLS, "billing": candidate}),
        measure("1", CHAMPION_RECALLS),
    )
    r = rule(v, "regression:recall.billing")
    assert r.outcome is (Outcome.PASS if passed else Outcome.FAIL)
    assert r.observed == pytest.approx(candidate - 0.70)  # signed gain, positive = better
    assert "higher is better" in r.detail


def test_per_class_threshold_and_missing_class_metric():
    p = policy(thresholds={"recall.billing": {"min": 0.65}, "precision.billing": {"min": 0.5}})
    v = decide("m", p, measure("2", CHAMPION_RECALLS, **{"precision.billing": float("nan")}), None)
    assert rule(v, "threshold:recall.billing").outcome is Outcome.PASS
    # undefined precision (never predicted) fails a threshold: not measured is not met
    assert rule(v, "threshold:precision.billing").outcome is Outcome.FAIL


# --- 4. the paired bootstrap ----------------------------------------------------------------------


def bootstrap_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(21)
    y = rng.choice(np.asarray(SORTED, dtype=object), 400, p=[0.4, 0.3, 0.2, 0.1])
    return y, informative_proba(y, SORTED, 22, strength=3.0), random_proba(len(y), len(SORTED), 23)


def test_bootstrap_macro_f1_clearly_better_candidate():
    y, good, bad = bootstrap_case()
    out = ev.paired_bootstrap("macro_f1", y, good, bad, n=100, classes=SORTED)
    assert out["resamples"] == 100
    assert out["prob_not_worse"] >= 0.99
    assert out["gain_p05"] > 0.2
    worse = ev.paired_bootstrap("macro_f1", y, bad, good, n=100, classes=SORTED)
    assert worse["prob_not_worse"] <= 0.01 and worse["gain_p95"] < 0


def test_bootstrap_lower_is_better_log_loss_on_multiclass_scores():
    y, good, bad = bootstrap_case()
    out = ev.paired_bootstrap("log_loss", y, good, bad, n=50, classes=SORTED)
    assert out["prob_not_worse"] >= 0.99 and out["gain_p05"] > 0


def test_bootstrap_of_identical_models_has_zero_gain():
    y, good, _ = bootstrap_case()
    out = ev.paired_bootstrap("macro_f1", y, good, good.copy(), n=50, classes=SORTED)
    assert out["prob_not_worse"] == 1.0
    assert out["gain_p05"] == 0.0 and out["gain_p95"] == 0.0


def test_bootstrap_of_a_per_class_recall_skips_resamples_without_the_class():
    """recall.<c> is NaN on a resample without rows of c: such resamples are left out."""
    y = np.asarray(["account"] * 60 + ["billing"] * 39 + ["technical"], dtype=object)
    good = informative_proba(y, ["account", "billing", "technical"], 3, strength=4.0)
    out = ev.paired_bootstrap(
        "recall.technical", y, good, good, n=100, classes=["account", "billing", "technical"]
    )
    assert 0 < out["resamples"] < 100  # ~63 % of resamples hold the single technical row


# --- 7. curves ------------------------------------------------------------------------------------


def test_curves_confusion_matrix_and_per_class_recall():
    y, proba = metric_cases()["imbalanced"]
    other = random_proba(len(y), len(SORTED), 4)
    out = ev.curves(Task.MULTICLASS, y, {"2": proba, "1": other}, classes=SORTED)
    assert out["classes"] == SORTED and out["rows"] == len(y)
    assert set(out["models"]) == {"2", "1"}
    for version, s in (("2", proba), ("1", other)):
        model = out["models"][version]
        pred = np.asarray(SORTED, dtype=object)[s.argmax(axis=1)]
        confusion = np.asarray(model["confusion"])
        assert confusion.shape == (len(SORTED), len(SORTED))
        assert confusion.sum(axis=1).tolist() == [int((y == c).sum()) for c in SORTED]
        assert confusion.sum(axis=0).tolist() == [int((pred == c).sum()) for c in SORTED]
        assert confusion.tolist() == skm.confusion_matrix(y, pred, labels=SORTED).tolist()
        assert list(model["per_class"]) == SORTED
        for c in SORTED:
            assert model["per_class"][c]["recall"] == pytest.approx(
                skm.recall_score(y, pred, labels=[c], average="macro"), abs=1e-4
            )
            assert model["per_class"][c]["precision"] == pytest.approx(
                skm.precision_score(y, pred, labels=[c], average="macro"), abs=1e-4
            )
        assert sum(b[2] for b in model["calibration"]) == len(y)


def test_curves_of_an_absent_class_give_none_recall_and_a_zero_row():
    y = np.asarray(["account", "billing", "technical"] * 20, dtype=object)
    proba = informative_proba(y, SORTED, 8, strength=1.0)
    model = ev.curves(Task.MULTICLASS, y, {"1": proba}, classes=SORTED)["models"]["1"]
    assert model["per_class"]["delivery"]["recall"] is None
    assert model["confusion"][SORTED.index("delivery")] == [0, 0, 0, 0]
    assert np.asarray(model["confusion"]).sum(axis=1).tolist() == [20, 20, 0, 20]


# --- 5. training, the ONNX twin and scoring --------------------------------------------------------

ESTIMATORS = {
    "logistic": {"class": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 500}},
    "boosting": {
        "class": "sklearn.ensemble.HistGradientBoostingClassifier",
        "params": {"max_iter": 40, "random_state": 0},
    },
}


@pytest.fixture(scope="module")
def trained() -> dict[str, tuple[ModelSpec, tr.TrainResult]]:
    out = {}
    df = frame()
    with threadpool_limits(limits=1):
        for key, estimator in ESTIMATORS.items():
            spec = spec_of(raw_spec(estimator=estimator))
            out[key] = (spec, tr.train(df, spec))
    return out


def messy(X: pd.DataFrame) -> pd.DataFrame:
    """Missing values in every column, categories never seen in training, an all-missing row."""
    X = X.copy()
    rng = np.random.default_rng(3)
    for col in X.columns:
        X.loc[rng.random(len(X)) < 0.2, col] = None
    X.loc[rng.random(len(X)) < 0.1, "region"] = "never-seen"
    X.iloc[0] = None
    return X


@pytest.mark.parametrize("estimator", list(ESTIMATORS))
def test_training_keeps_string_classes_in_sorted_order(trained, estimator):
    spec, result = trained[estimator]
    assert list(result.pipeline.classes_) == SORTED == ev.classes_of(spec)
    assert set(result.train["intent"]) == set(CLASSES)
    assert len(result.train) == 1600 and len(result.holdout) == 400
    assert result.holdout["created_at"].min() > result.train["created_at"].max()  # out of time
    s = ev.scores(result.pipeline, result.holdout[spec.features.all], spec.task)
    assert s.shape == (400, 4)
    np.testing.assert_allclose(s.sum(axis=1), 1.0)
    got = ev.all_metrics(spec.task, result.holdout["intent"].to_numpy(), s, classes=ev.classes_of(spec))
    assert got["macro_f1"] > 0.4 and got["roc_auc_ovr"] > 0.7  # it learned something


@pytest.mark.parametrize("estimator", list(ESTIMATORS))
def test_the_onnx_twin_passes_parity_on_every_class_column(trained, estimator):
    spec, result = trained[estimator]
    pipeline, holdout = result.pipeline, result.holdout
    onnx_bytes, report = onnx_twin.export(pipeline, spec, holdout)
    assert report["status"] == "passed", report
    assert onnx_bytes is not None
    assert report["rows"] == len(holdout) and report["label_agreement"] == 1.0
    assert report["max_scaled_diff"] <= spec.scoring.onnx_tolerance
    twin = onnx_twin.OnnxModel(onnx_bytes, spec)
    assert list(twin.classes_) == list(pipeline.classes_) == SORTED
    tol = spec.scoring.onnx_tolerance
    for X in (holdout[spec.features.all], messy(holdout[spec.features.all])):
        ref, got = pipeline.predict_proba(X), twin.predict_proba(X)
        assert got.shape == ref.shape == (len(X), len(SORTED))
        per_class = np.abs(got - ref).max(axis=0)
        assert (per_class <= tol).all(), dict(zip(SORTED, per_class, strict=True))
        assert np.array_equal(twin.predict(X), pipeline.predict(X))


@pytest.mark.parametrize("estimator", list(ESTIMATORS))
def test_predict_frame_gives_string_classes_and_a_column_per_class(trained, estimator):
    spec, result = trained[estimator]
    X = result.holdout[spec.features.all]
    twin = onnx_twin.OnnxModel(onnx_twin.convert(result.pipeline, spec), spec)
    for model in (result.pipeline, twin):
        pred, proba, classes = scoring.predict_frame(model, X, spec.task)
        assert [str(c) for c in classes] == SORTED
        assert proba is not None and proba.shape == (len(X), len(SORTED))
        assert all(isinstance(p, str) for p in pred)
        assert set(pred) <= set(CLASSES)
        assert pred.tolist() == np.asarray(SORTED)[proba.argmax(axis=1)].tolist()
        assert pred.tolist() == [str(p) for p in result.pipeline.predict(X)]


def test_score_file_writes_one_probability_column_per_class(tmp_path, trained):
    spec, result = trained["logistic"]
    src = frame(300, seed=4)
    path = tmp_path / "batch.parquet"
    pq.write_table(pa.Table.from_pandas(src, preserve_index=False), path, row_group_size=100)
    twin = onnx_twin.OnnxModel(onnx_twin.convert(result.pipeline, spec), spec)
    meta = scoring.output_meta(spec, "1", "champion", "manual__test")
    outputs = {}
    for engine, model in (("sklearn", result.pipeline), ("onnx", twin)):
        out_uri = str(tmp_path / f"{engine}.parquet")
        scoring.score_file(model, spec, str(path), out_uri, meta=meta, chunk_rows=64)
        outputs[engine] = out = pd.read_parquet(out_uri)
        assert list(out.columns) == [
            "ticket_id",
            "prediction",
            *[f"proba_{c}" for c in SORTED],
            *meta,
        ]
        assert out["ticket_id"].tolist() == src["ticket_id"].tolist()
        assert set(out["prediction"]) <= set(CLASSES)
        proba = out[[f"proba_{c}" for c in SORTED]].to_numpy()
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
        assert out["prediction"].tolist() == np.asarray(SORTED)[proba.argmax(axis=1)].tolist()
    assert outputs["sklearn"]["prediction"].tolist() == outputs["onnx"]["prediction"].tolist()


def test_shadow_of_the_twin_agrees_with_the_pipeline(tmp_path, trained):
    """The served pipeline and its twin in shadow: the same class on every row, and the shadow
    score (the probability of the class the served model chose) within the tolerance."""
    spec, result = trained["boosting"]
    src = frame(300, seed=5)
    path = tmp_path / "batch.parquet"
    pq.write_table(pa.Table.from_pandas(src, preserve_index=False), path)
    twin = onnx_twin.OnnxModel(onnx_twin.convert(result.pipeline, spec), spec)
    meta = scoring.output_meta(spec, "2", "challenger", "manual__shadow")
    shadow_uri = str(tmp_path / "shadow.parquet")
    out = scoring.score_file(
        result.pipeline,
        spec,
        str(path),
        str(tmp_path / "out.parquet"),
        meta=meta,
        chunk_rows=128,
        shadow_model=twin,
        shadow_uri=shadow_uri,
    )
    assert out.shadow_uri == shadow_uri
    summary = scoring.shadow_summary([shadow_uri], spec.task)
    assert summary["rows"] == 300
    assert summary["agreement"] == 1.0 and summary["flipped_rows"] == 0
    assert summary["max_abs_diff"] <= spec.scoring.onnx_tolerance
    rows = pd.read_parquet(shadow_uri)
    expected = result.pipeline.predict_proba(src[spec.features.all]).max(axis=1)
    np.testing.assert_allclose(rows["score"].to_numpy(), expected)


def test_a_text_spec_is_not_convertible_and_says_why():
    raw = raw_spec()
    raw["features"] = {
        **raw["features"],
        "text": ["question"],
        "text_vectorizer": {"max_features": 100, "min_df": 1},
    }
    spec = spec_of(raw)
    df = frame(400, seed=2)
    words = {
        "technical": "error crash",
        "billing": "invoice charge",
        "delivery": "parcel late",
        "account": "login password",
    }
    df["question"] = [f"my {words[c]} please help" for c in df["intent"]]
    with threadpool_limits(limits=1):
        result = tr.train(df, spec)
    onnx_bytes, report = onnx_twin.export(result.pipeline, spec, result.holdout)
    assert onnx_bytes is None
    assert report["status"] == "not_convertible"
    assert "text" in report["reason"] and "question" in report["reason"]
    with pytest.raises(onnx_twin.NotConvertible, match="text features"):
        onnx_twin.convert(result.pipeline, spec)


# --- 6. a window that lacks a class ---------------------------------------------------------------


def test_training_refuses_a_window_without_rows_of_a_listed_class():
    df = frame(400, seed=1)
    df = df[df["intent"] != "delivery"]
    with pytest.raises(SpecError) as err:
        tr.train(df, spec_of(raw_spec()))
    message = str(err.value)
    assert "classes ['delivery'] of data.classes have no row in the training part" in message
    assert "training_window_days" in message and "remove a class" in message


def test_training_refuses_a_class_seen_only_in_the_holdout():
    """The time split puts the newest 20 % in the holdout: a class only there has no training rows."""
    df = frame(500, seed=1)
    df.loc[df["intent"] == "account", "intent"] = "billing"
    df.loc[df.index[-20:], "intent"] = "account"
    with pytest.raises(
        SpecError,
        match=r"classes \['account'\] of data.classes have no row in the training part .*\(400 rows\)",
    ):
        tr.train(df, spec_of(raw_spec()))


def test_training_refuses_a_target_value_outside_the_classes():
    df = frame(200, seed=1)
    df.loc[df.index[5], "intent"] = "refunds"
    with pytest.raises(SpecError, match=r"holds \['refunds'\], which data.classes does not list"):
        tr.train(df, spec_of(raw_spec()))


def test_a_class_with_too_few_holdout_rows_is_listed_not_judged():
    """A drop on 20 rows of a class (one row is 5 points) is not a verdict: gate.class_min_rows."""
    candidate = {**CHAMPION_RECALLS, "billing": 0.50}
    rows = {"account": 300, "billing": 20, "delivery": 300, "technical": 300}
    v = decide("m", policy(), measure("2", candidate), measure("1", CHAMPION_RECALLS), class_rows=rows)
    assert rule(v, "class:recall.billing").outcome is Outcome.SKIPPED
    assert "20 holdout rows" in rule(v, "class:recall.billing").detail
    assert v.passed is True
    # With enough rows the same drop fails.
    rows["billing"] = 50
    v = decide("m", policy(), measure("2", candidate), measure("1", CHAMPION_RECALLS), class_rows=rows)
    assert rule(v, "class:recall.billing").outcome is Outcome.FAIL


def test_run_overrides_are_checked_against_the_task_and_its_classes():
    from mlcycle.core.spec import gate_with_overrides

    spec = spec_of(raw_spec())
    kw = {"task": spec.task, "classes": spec.data.classes}
    with pytest.raises(SpecError, match=r"thresholds\.roc_auc: roc_auc does not apply to multiclass"):
        gate_with_overrides(spec.gate, {"thresholds": {"roc_auc": {"min": 0.8}}}, **kw)
    with pytest.raises(SpecError, match=r"'refunds' is not one of data\.classes"):
        gate_with_overrides(spec.gate, {"max_regression": {"recall.refunds": 0.1}}, **kw)
    merged = gate_with_overrides(spec.gate, {"max_regression": {f"recall.{spec.data.classes[0]}": 0.1}}, **kw)
    assert merged.max_regression[f"recall.{spec.data.classes[0]}"] == 0.1


def test_integer_classes_are_read_as_the_text_of_the_targets_values():
    import pandas as pd

    raw = raw_spec()
    raw["data"]["classes"] = [1, 2, 3, 4, 5]  # star ratings
    spec = spec_of(raw)
    assert spec.data.classes == ["1", "2", "3", "4", "5"]
    assert encode_target(spec, pd.Series([5, 1, None])).tolist()[:2] == ["5", "1"]
    raw["data"]["classes"] = [True, False, "maybe"]
    assert "booleans" in spec_error(raw)


def test_an_estimator_that_refuses_the_data_is_a_spec_error_naming_the_fix():
    raw = raw_spec()
    raw["features"]["numeric_scaling"] = "standard"
    raw["estimator"] = {"class": "sklearn.naive_bayes.MultinomialNB", "params": {}}
    spec = spec_of(raw)
    with pytest.raises(
        SpecError, match=r"MultinomialNB refused the training data: .*[Nn]egative.*numeric_scaling"
    ):
        tr.train(frame(400), spec)
