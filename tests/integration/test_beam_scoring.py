"""The Beam scoring engine (``scoring.engine: beam``) on the DirectRunner, with a real trained model:
the same rows as the built-in engine, dead letters for the rows it cannot score, and a whole
score_<model> run with its metrics in the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import today, write_batches

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = "churn"
MULTI_PROCESS = ["--runner=DirectRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=2"]


@pytest.fixture
def champion(champion_env):
    """A lake with a week of batches and a trained churn champion v1 (ONNX twin passed parity)."""
    return champion_env


def _batch(env, tmp_path: Path, rows: int, name: str = "batch.parquet", edit=None) -> Path:
    """A generated batch of ``rows`` rows in ``tmp_path`` (``edit`` changes its DataFrame first)."""
    from mlcycle.data.generators import generate_batch
    from mlcycle.data.lake import write_parquet

    df = generate_batch(MODEL, today(), rows, seed=7)
    if edit is not None:
        df = edit(df)
    path = tmp_path / name
    write_parquet(df, path)
    return path


def _beam_job(env, batch: Path, *, engine: str, shadow_engine: str | None = None, batch_rows: int = 700):
    """A staged Beam job for ``batch`` scored by v1 with ``engine`` (and v1 again in shadow)."""
    from mlcycle.core.run import RunInfo
    from mlcycle.core.spec import get_spec
    from mlcycle.flows import score

    spec = get_spec(MODEL)
    choice = score.choose_model(spec, env.mlc, engine="beam")
    assert choice["batch_engine"] == "beam" and choice["engine"] == "onnx"  # auto: the twin passed parity
    choice = {**choice, "engine": engine}
    if shadow_engine:
        choice |= {"shadow_version": choice["version"], "shadow_engine": shadow_engine}
    run = RunInfo(f"score_{MODEL}", f"beam-{engine}-{batch.stem}")
    job_uri, job = score.prepare_beam(
        spec, run, env.mlc, batch_uri=str(batch), model=choice, lake_root=env.lake, batch_rows=batch_rows
    )
    return spec, choice, job_uri, job


def _run(job_uri: str, options: list[str] = MULTI_PROCESS) -> dict:
    from mlcycle.ml import beam_scoring

    return beam_scoring.run([f"--job={job_uri}", *options])


def _builtin(env, spec, choice, batch: Path, *, out: Path, engine: str):
    """The built-in chunked engine's output for the same batch and version."""
    import pandas as pd

    from mlcycle.flows import score
    from mlcycle.ml import scoring

    model = score.load_model(env.mlc, spec, choice["version"], engine)
    scoring.score_file(model, spec, str(batch), str(out), meta={"x": "y"}, chunk_rows=500)
    return pd.read_parquet(out)


@pytest.mark.parametrize("engine", ["onnx", "sklearn"])
def test_beam_output_equals_the_builtin_engine_row_for_row(champion, tmp_path, engine):
    import numpy as np
    import pandas as pd

    from mlcycle.flows.score import expected_columns

    batch = _batch(champion, tmp_path, 3000)
    spec, choice, job_uri, job = _beam_job(champion, batch, engine=engine, shadow_engine="sklearn")
    metrics = _run(job_uri)

    beam = pd.read_parquet(job.output_uri)
    assert list(beam.columns) == expected_columns(spec, [0, 1])
    assert metrics["counters"]["rows_scored"] == len(beam) == 3000
    assert metrics["counters"].get("rows_failed", 0) == 0
    assert pd.read_parquet(job.dead_letter_uri).empty
    assert metrics["runner"] == "DirectRunner" and metrics["distributions"]["batch_latency_ms"]["count"] >= 5
    assert set(beam["model_version"]) == {"1"} and set(beam["run_id"]) == {job.meta["run_id"]}
    assert not list(Path(job.output_uri).parent.glob(".*beam-shards")), "shards left behind"

    # Row for row (Beam's workers do not keep the input order; the key identifies a row): the same
    # keys, the same decisions, scores within the spec's ONNX tolerance of the built-in engine's
    # output by scikit-learn, and as good as equal to its output by the same runtime.
    key = spec.data.key_column
    beam = beam.sort_values(key).reset_index(drop=True)
    tolerance = spec.scoring.onnx_tolerance
    for builtin_engine in ("sklearn", engine):
        ref = _builtin(
            champion,
            spec,
            choice,
            batch,
            out=tmp_path / f"ref-{builtin_engine}.parquet",
            engine=builtin_engine,
        )
        ref = ref.sort_values(key).reset_index(drop=True)
        assert beam[key].tolist() == ref[key].tolist()
        assert beam["prediction"].dtype == ref["prediction"].dtype
        same = (beam["prediction"] == ref["prediction"]).mean()
        assert same == 1.0, (
            f"{1 - same:.2%} of the decisions differ from the built-in {builtin_engine} engine"
        )
        worst = np.abs(beam[["proba_0", "proba_1"]].to_numpy() - ref[["proba_0", "proba_1"]].to_numpy()).max()
        # The same runtime: float32 sums over other batch sizes and threads, no more.
        assert worst <= (tolerance if builtin_engine != engine else 1e-6), (builtin_engine, worst)

    # The shadow (the same version by scikit-learn) is compared on the same rows.
    shadow = pd.read_parquet(job.shadow_uri)
    assert len(shadow) == 3000 and (shadow["prediction"] == shadow["shadow_prediction"]).all()
    assert (shadow["score"] - shadow["shadow_score"]).abs().max() <= tolerance


def test_malformed_rows_end_in_the_dead_letter_file_with_their_reason(champion, tmp_path):
    import numpy as np
    import pandas as pd

    _, _, _, probe = _beam_job(champion, _batch(champion, tmp_path, 10, "probe.parquet"), engine="onnx")
    required = {f["name"] for f in probe.features if f["required"]}
    numeric = next(f["name"] for f in probe.features if f["kind"] == "numeric" and f["required"])
    category = next(f["name"] for f in probe.features if f["kind"] == "categorical")

    def spoil(df: pd.DataFrame) -> pd.DataFrame:
        df = df.copy()
        df.loc[3, "monthly_charges"] = np.inf
        df.loc[11, "total_charges"] = -np.inf
        df[numeric] = df[numeric].astype("float64")
        df.loc[20, numeric] = np.nan  # a null where the model never saw one
        df.loc[42, category] = "a category nobody has"  # the encoder ignores it: scored, counted
        return df

    assert "monthly_charges" in {f["name"] for f in probe.features}
    batch = _batch(champion, tmp_path, 2000, edit=spoil)
    spec, _, job_uri, job = _beam_job(champion, batch, engine="onnx", batch_rows=300)
    metrics = _run(job_uri)

    dead = pd.read_parquet(job.dead_letter_uri).sort_values("row").reset_index(drop=True)
    src = pd.read_parquet(batch)
    assert dead["row"].tolist() == [3, 11, 20]
    assert dead["key"].tolist() == src.loc[[3, 11, 20], spec.data.key_column].astype(str).tolist()
    assert dead["column"].tolist() == ["monthly_charges", "total_charges", numeric]
    assert dead["reason"][0].startswith("non-finite value") and dead["value"][0] == "inf"
    assert dead["reason"][1].startswith("non-finite value")
    assert dead["reason"][2].startswith("null:") and numeric in required
    scored = pd.read_parquet(job.output_uri)
    assert len(scored) == 2000 - 3 == metrics["counters"]["rows_scored"]
    assert metrics["counters"]["rows_failed"] == 3 and metrics["counters"]["rows_read"] == 2000
    assert metrics["counters"]["rows_unseen_category"] >= 1
    assert src.loc[42, spec.data.key_column] in set(scored[spec.data.key_column])


def test_a_batch_missing_a_feature_dead_letters_every_row(champion, tmp_path):
    """A file without a feature column: each row goes to the dead letters, named, none is scored."""
    import pandas as pd

    batch = _batch(champion, tmp_path, 50, edit=lambda df: df.drop(columns=["region"]))
    _, _, job_uri, job = _beam_job(champion, batch, engine="sklearn")
    metrics = _run(job_uri, ["--runner=DirectRunner", "--direct_running_mode=in_memory"])
    dead = pd.read_parquet(job.dead_letter_uri)
    assert len(dead) == 50 and set(dead["column"]) == {"region"}
    assert set(dead["reason"]) == {"missing column: the batch has no column region"}
    assert metrics["counters"].get("rows_scored", 0) == 0 and pd.read_parquet(job.output_uri).empty


def test_score_dag_with_engine_beam(dags, champion):
    """score_churn with the run param engine=beam: one partition, the pipeline through BeamHook,
    the Beam metrics and dead-letter info in the report, the predictions in place."""
    import pandas as pd

    from mlcycle.core.run import run_key

    (batch,) = write_batches(champion.lake, MODEL, today(), days=1, rows=2500)
    dr = dags[f"score_{MODEL}"].test(run_conf={"engine": "beam", "chunk_rows": 400})
    assert dr.state == "success", {ti.task_id: str(ti.state) for ti in dr.get_task_instances()}
    assert [str(ti.state) for ti in dr.get_task_instances() if ti.task_id == "score_partition"] == ["success"]

    base = Path(champion.lake) / MODEL / "runs" / run_key(dr.run_id) / "scoring"
    report = json.loads((base / "report.json").read_text())
    beam = report["beam"]
    assert report["batch_engine"] == "beam" and report["engine"] == "onnx" and report["partitions"] == 1
    assert beam["runner"] == "DirectRunner"
    assert beam["rows_read"] == 2500
    assert beam["rows_scored"] == report["rows"] == beam["rows_read"] - beam["dead_letters"]
    assert beam["dead_letters"] == beam["rows_failed"] == 0
    assert Path(beam["dead_letter_uri"]).exists() and pd.read_parquet(beam["dead_letter_uri"]).empty
    assert beam["metrics"]["distributions"]["batch_latency_ms"]["count"] >= 7  # 2,500 rows by 400
    assert beam["metrics"]["model_handler"], "RunInference's own metrics are kept"
    html = (base / "report.html").read_text()
    assert "beam_dead_letters" in html and beam["dead_letter_uri"] in html

    pred = pd.read_parquet(Path(champion.lake) / MODEL / "predictions" / batch.name)
    assert len(pred) == 2500 and set(pred["run_id"]) == {dr.run_id}
    src = pd.read_parquet(batch)
    assert sorted(pred["customer_id"]) == sorted(src["customer_id"])
    # The staged model copies are removed; the job and its metrics stay as evidence.
    assert sorted(p.name for p in (base / "beam").iterdir()) == ["job.json", "metrics.json"]


def _spec_with(scoring: dict):
    import yaml

    from mlcycle.core.settings import specs_dir
    from mlcycle.core.spec import parse_spec

    path = Path(specs_dir()) / f"{MODEL}.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["scoring"] = scoring
    return parse_spec(raw, path)


@pytest.mark.parametrize(
    ("scoring", "message"),
    [
        (
            {"engine": "beam", "beam": {"runner": "DirektRunner"}},
            r"scoring\.beam\.runner: unknown Beam runner 'DirektRunner' \(did you mean DirectRunner\?\)",
        ),
        ({"engine": "beam", "beam": {"runner": "Spark"}}, r"unknown Beam runner 'Spark'.*SparkRunner"),
        ({"engine": "beam", "beam": {"direct_num_workers": 0}}, r"scoring\.beam\.direct_num_workers"),
        (
            {"engine": "beam", "beam": {"options": {"runner": "FlinkRunner"}}},
            r"scoring\.beam\.options: \['runner'\] are set by their own keys",
        ),
        ({"engine": "beam", "beam": {"options": {"--region": "x"}}}, r"are not pipeline option names"),
        ({"engine": "beam", "beam": {"workers": 4}}, r"scoring\.beam\.workers"),
        ({"engine": "spark"}, r"scoring\.engine"),
    ],
)
def test_a_bad_beam_spec_is_a_clear_spec_error(scoring, message):
    from mlcycle.core.errors import SpecError

    with pytest.raises(SpecError, match=message):
        _spec_with(scoring)


def test_runner_options_from_the_spec_and_a_connection():
    from mlcycle.core.errors import SpecError
    from mlcycle.ml.beam_job import runner_options

    spec = _spec_with(
        {"engine": "beam", "beam": {"options": {"max_num_workers": 8}, "connection_id": "beam_x"}}
    )
    assert runner_options(spec.scoring.beam) == (
        "DirectRunner",
        {"direct_running_mode": "multi_processing", "direct_num_workers": 2, "max_num_workers": 8},
    )
    runner, options = runner_options(
        spec.scoring.beam, {"runner": "FlinkRunner", "flink_master": "flink:8081", "max_num_workers": 4}
    )
    assert runner == "FlinkRunner"
    assert options == {"max_num_workers": 4, "flink_master": "flink:8081"}  # the connection wins
    with pytest.raises(SpecError, match=r"unknown Beam runner 'Flink' in connection 'beam_x'"):
        runner_options(spec.scoring.beam, {"runner": "Flink"})
    with pytest.raises(SpecError, match=r"connection 'beam_x' sets \['job'\]"):
        runner_options(spec.scoring.beam, {"job": "/elsewhere.json"})


@pytest.mark.parametrize(
    ("engine", "expected"),
    [(None, ("onnx", "chunked", 3)), ("sklearn", ("sklearn", "chunked", 3)), ("beam", ("onnx", "beam", 1))],
)
def test_the_run_param_engine_overrides_the_spec(champion, tmp_path, engine, expected):
    """(model engine, batch engine, partitions of 2,500 rows by 1,000) for the run's engine param."""
    from mlcycle.core.spec import get_spec
    from mlcycle.flows import score

    spec = get_spec(MODEL)
    assert spec.scoring.engine == "auto"
    chosen = score.choose_model(spec, champion.mlc, engine=engine)
    model_engine, batch_engine, partitions = expected
    assert (chosen["engine"], chosen["batch_engine"]) == (model_engine, batch_engine)
    if engine == "sklearn":
        assert chosen["engine_reason"] == "the run sets scoring.engine: sklearn"
    batch = _batch(champion, tmp_path, 2500)
    assert len(score.plan(str(batch), 1000, score.batch_engine(spec, engine))) == partitions
