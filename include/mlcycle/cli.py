"""``mlcycle``: what users do outside Airflow.

mlcycle models                         list the model specs (and check them)
mlcycle generate churn --days 30       write sample daily batches into the lake
mlcycle generate churn --corrupt --out lake/churn/uploads/bad.parquet
mlcycle champion churn                 the current champion and challenger
mlcycle ledger churn                   every alias move of a model
mlcycle summary                        one paragraph per model (used by `make demo`)
mlcycle check churn                    spec, estimator and contract checked without training
mlcycle ingest credit data.csv         land a Parquet/CSV table as daily batches (or --date)
mlcycle contract suggest credit        a contract proposed from the data, as a diff (--write)
mlcycle serve churn --port 5001        strict REST scoring of churn@champion (make serve)
mlcycle package lambda churn --out build/lambda-churn   an AWS Lambda container context of churn@champion
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
from typing import Any

from mlcycle.core import settings
from mlcycle.core.errors import MlcycleError

log = logging.getLogger("mlcycle")


def _specs(names: list[str] | None = None) -> list[Any]:
    from mlcycle.core.spec import get_spec, load_specs

    return [get_spec(n) for n in names] if names else load_specs(settings.specs_dir())


def cmd_models(args: argparse.Namespace) -> int:
    """``mlcycle models``: one line per spec. Every spec is validated, its estimator too (class and
    params, as ``mlcycle check`` does), so one invalid spec fails the command."""
    from mlcycle.core.errors import SpecError
    from mlcycle.core.spec import estimator_problems

    specs = _specs()
    problems = [f"  {settings.specs_dir() / s.name}.yaml: {p}" for s in specs for p in estimator_problems(s)]
    if problems:
        raise SpecError("invalid estimator in model spec(s):\n" + "\n".join(problems))
    for spec in specs:
        print(
            f"{spec.name:12} {spec.task:15} {spec.estimator.class_:50} schedule '{spec.schedule}' "
            f"gate on {spec.gate.primary_metric}"
        )
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    """``mlcycle generate``: daily batches in the lake (kept unless ``--overwrite``), or one as ``--out``."""
    from mlcycle.data import lake as lk
    from mlcycle.data.generators import generate_batch

    spec = _specs([args.model])[0]
    if not spec.data.generator:
        raise MlcycleError(
            f"model {spec.name} has no data.generator in its spec; nothing can generate its data"
        )
    rows = args.rows or spec.data.rows_per_batch
    options = {
        "seed": args.seed,
        "drift": args.drift,
        "corrupt": args.corrupt,
        "shuffle_labels": args.shuffle_labels,
        "degrade": args.degrade,
        "new_intent": args.new_intent,
    }
    if args.out:
        day = args.end
        lk.write_parquet(generate_batch(spec.data.generator, day, rows, **options), lk.as_path(args.out))
        print(f"wrote {rows} rows for {day} to {args.out}")
        return 0
    lake = lk.Lake(args.lake or settings.lake_root(), spec.name)
    new, kept = 0, 0
    for i in range(args.days):
        day = args.end - dt.timedelta(days=args.days - 1 - i)
        path = lake.batch_path(day)
        if path.exists() and not args.overwrite:
            kept += 1
            continue
        lk.write_parquet(generate_batch(spec.data.generator, day, rows, **options), path)
        new += 1
    print(
        f"{spec.name}: {new} new batch(es) of {rows} rows, {kept} already there "
        f"({args.end - dt.timedelta(days=args.days - 1)} .. {args.end}) in {lake.incoming}"
    )
    return 0


def _champion_info(mlc: Any, model: str) -> dict[str, Any]:
    from mlcycle.store import registry

    out: dict[str, Any] = {"model": model}
    for alias in (registry.CHAMPION, registry.CHALLENGER):
        mv = registry.version_by_alias(mlc, model, alias) if _registered(mlc, model) else None
        out[alias] = (
            None
            if mv is None
            else {
                "version": str(mv.version),
                "verdict": mv.tags.get(registry.TAG_VERDICT),
                "summary": mv.tags.get(registry.TAG_VERDICT_SUMMARY),
                "evidence": mv.tags.get(registry.TAG_EVIDENCE),
                "data_digest": mv.tags.get(registry.TAG_DIGEST, "")[:12],
                "run_id": mv.tags.get(registry.TAG_RUN_ID),
            }
        )
    from mlcycle.flows.guard import alias_check
    from mlcycle.store import ledger

    champion = out[registry.CHAMPION]
    out["alias_check"] = alias_check(champion["version"] if champion else None, ledger.history(model))
    return out


def _registered(mlc: Any, model: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        mlc.get_registered_model(model)
    except MlflowException:
        return False
    return True


def cmd_champion(args: argparse.Namespace) -> int:
    """``mlcycle champion``: the champion and challenger (text or ``--json``); exit 1 without a champion."""
    from mlcycle.store import registry

    mlc = registry.client()
    info = _champion_info(mlc, args.model)
    print(json.dumps(info, indent=2) if args.json else _format_champion(info))
    if not info["alias_check"]["ok"]:
        print(f"WARNING: {args.model}: {info['alias_check']['detail']}", file=sys.stderr)
    return 0 if info["champion"] else 1


def _format_champion(info: dict[str, Any]) -> str:
    lines = [f"{info['model']}:"]
    for alias in ("champion", "challenger"):
        v = info[alias]
        lines.append(
            f"  {alias:10} "
            + ("none" if v is None else f"v{v['version']}  gate {v['verdict'] or '-'}  {v['summary'] or ''}")
        )
    return "\n".join(lines)


def cmd_webhook(args: argparse.Namespace) -> int:
    """``mlcycle webhook URL``: register MLflow's registry webhook (alias set) to the plugin's
    endpoint, signed with ``MLCYCLE_MLFLOW_WEBHOOK_SECRET`` (the api-server must have the same)."""
    import os

    from mlcycle.store import registry

    secret = os.environ.get(registry.WEBHOOK_ENV, "")
    if len(secret) < 16:
        print(
            f"{registry.WEBHOOK_ENV} must hold a secret of at least 16 characters (the api-server "
            "needs the same value); generate one with: python -c 'import secrets; print(secrets.token_hex(32))'",
            file=sys.stderr,
        )
        return 2
    webhook_id = registry.create_webhook(registry.client(), args.url, secret)
    print(f"webhook {webhook_id}: {registry.WEBHOOK_EVENT} -> {args.url}")
    return 0


def cmd_ledger(args: argparse.Namespace) -> int:
    """``mlcycle ledger``: the alias moves of one model or all, newest first, at most ``--limit``."""
    from mlcycle.store import ledger

    entries = ledger.history(args.model, limit=args.limit)
    if args.json:
        print(json.dumps([e.to_dict() for e in entries], indent=2))
        return 0
    if not entries:
        print(
            f"no alias moves recorded{' for ' + args.model if args.model else ''} in {settings.ledger_uri()}"
        )
        return 0
    for e in entries:
        print(
            f"{e.created_at:%Y-%m-%d %H:%M:%S}  {e.model}@{e.alias}  v{e.previous_version or '-'} -> v{e.new_version}  "
            f"{e.action:9} by {e.actor}  reason: {e.reason}\n    {e.verdict or ''}\n    evidence: {e.evidence_uri or '-'}"
        )
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    """One paragraph per model: what the registry and ledger say now."""
    from mlcycle.store import ledger, registry

    mlc = registry.client()
    ui = registry.ui_base(mlc.tracking_uri)
    for spec in _specs(args.models or None):
        if not _registered(mlc, spec.name):
            print(f"{spec.name}: no version registered yet.")
            continue
        versions = sorted(mlc.search_model_versions(f"name = '{spec.name}'"), key=lambda v: int(v.version))
        latest = versions[-1]
        champ = registry.version_by_alias(mlc, spec.name, registry.CHAMPION)
        run = mlc.get_run(registry.run_of(latest))
        primary = spec.gate.primary_metric
        metrics = {
            k.removeprefix("holdout_"): v for k, v in run.data.metrics.items() if k.startswith("holdout_")
        }
        key_metrics = ", ".join(
            f"{k}={metrics[k]:.4f}" for k in sorted(metrics) if k in (primary, *spec.gate.thresholds)
        )
        is_champ = champ is not None and champ.version == latest.version
        moves = ledger.history(spec.name, limit=1)
        print(
            f"{spec.name} ({spec.task}): latest v{latest.version} "
            f"({'CHAMPION' if is_champ else 'not champion'}; champion is v{champ.version if champ else '-'}). "
            f"Gate: {latest.tags.get(registry.TAG_VERDICT_SUMMARY, 'not gated (run stopped before the gate)')}. "
            f"Holdout: {key_metrics or 'n/a'}. Scoring engine: {_engine_line(spec, latest)}. "
            f"{len(versions)} version(s) registered. "
            f"Last ledger move: {f'v{moves[0].previous_version or chr(45)} -> v{moves[0].new_version} ({moves[0].action})' if moves else 'none'}.\n"
            f"  evidence: {latest.tags.get(registry.TAG_EVIDENCE, '-')}\n"
            f"  MLflow:   {registry.version_url(ui, spec.name, str(latest.version))}"
        )
    return 0


def _engine_line(spec: Any, mv: Any) -> str:
    from mlcycle.flows.score import engine_for

    engine, why = engine_for(spec, mv.tags, str(mv.version))
    return f"{engine} ({why})"


def cmd_serve(args: argparse.Namespace) -> int:
    """``mlcycle serve``: the strict REST scoring server of one version, until interrupted."""
    from mlcycle.serving import server
    from mlcycle.store import registry

    served = server.load(_specs([args.model])[0], registry.client(), alias=args.alias, version=args.version)
    print(
        f"serving {served.describe()} on http://{args.host}:{args.port}/invocations (Ctrl-C stops)",
        flush=True,
    )
    limit = server.MAX_BODY_BYTES if args.max_body_mb is None else int(args.max_body_mb * 1e6)
    server.run(served, host=args.host, port=args.port, max_body_bytes=limit)
    return 0


def cmd_package_lambda(args: argparse.Namespace) -> int:
    """``mlcycle package lambda``: a version as an AWS Lambda container context (``mlcycle.serving.lambda_package``)."""
    from pathlib import Path

    from mlcycle.serving import lambda_package
    from mlcycle.store import registry

    package = lambda_package.build(
        _specs([args.model])[0],
        registry.client(),
        Path(args.out),
        alias=args.alias,
        version=args.version,
        engine=args.engine,
    )
    print(f"packaged {package.describe()} for AWS Lambda in {package.out} ({len(package.files)} files)")
    print(f"  next: see {package.out / 'README.md'} (docker build, push to ECR, aws lambda create-function)")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """``mlcycle check``: each model's spec, estimator and contract checked without training (exit 1 on a problem)."""
    from mlcycle.core.errors import SpecError
    from mlcycle.data.checks import check_model

    failed = 0
    # Every spec file on its own: one that does not load is reported without hiding the others.
    for name in args.models or [p.stem for p in sorted(settings.specs_dir().glob("*.yaml"))]:
        try:
            report = check_model(_specs([name])[0], settings.contracts_dir())
        except SpecError as exc:
            print(f"{name}: the spec does not load\n  - {exc}")
            failed += 1
            continue
        print(report.describe())
        failed += not report.ok
    return 1 if failed else 0


def cmd_ingest(args: argparse.Namespace) -> int:
    """``mlcycle ingest``: a Parquet/CSV table landed as the model's daily batches (``mlcycle.data.ingest``)."""
    from pathlib import Path

    from mlcycle.data import ingest
    from mlcycle.data import lake as lk

    spec = _specs([args.model])[0]
    lake = lk.Lake(args.lake or settings.lake_root(), spec.name)
    landed = ingest.ingest(
        spec, lake, Path(args.file), time_column=args.time_column, day=args.date, replace=args.replace
    )
    print(f"{spec.name}: {sum(b.rows for b in landed)} rows of {args.file} in {len(landed)} daily batch(es):")
    for b in landed:
        print(f"  {b.day}  {b.rows:8} rows  {b.status:9}  {b.path}")
    return 0


def cmd_contract_suggest(args: argparse.Namespace) -> int:
    """``mlcycle contract suggest``: a suite proposed from data, printed as a diff; ``--write`` replaces the contract."""
    import copy

    from mlcycle.data import lake as lk
    from mlcycle.data import suggest as sg
    from mlcycle.data.contracts import ChunkedValidator, load_suite_dict

    spec = _specs([args.model])[0]
    path = settings.contracts_dir() / spec.contract
    current = load_suite_dict(path) if path.exists() else None
    if args.sources:
        sources = [lk.as_path(p) for p in args.sources]
    else:
        sources = sg.default_sources(lk.Lake(args.lake or settings.lake_root(), spec.name))
    margin = sg.MARGIN if args.margin is None else args.margin
    suite, warnings = sg.suggest(spec, sources, current=current, margin=margin)
    ChunkedValidator(copy.deepcopy(suite))  # GX builds it (and adds to its meta): a valid suite
    print(sg.unified_diff(path, path.read_text() if current else None, suite) or "(no change)")
    print(f"{spec.name}: {sg.diff_summary(current, suite)} (from {len(sources)} batch(es))")
    for warning in warnings:
        print(f"  warning: the data itself breaks the suggestion: {warning}")
    if args.write:
        lk.write_bytes_atomic(path, sg.suite_text(suite).encode())
        print(f"wrote {path}")
    else:
        print(f"review the diff, then rerun with --write to replace {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``mlcycle`` argument parser; each subcommand sets ``fn``, the ``cmd_*`` function that runs it."""
    parser = argparse.ArgumentParser(
        prog="mlcycle", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("models", help="list model specs").set_defaults(fn=cmd_models)

    gen = sub.add_parser("generate", help="write sample daily batches")
    gen.add_argument("model")
    gen.add_argument("--days", type=int, default=30)
    gen.add_argument(
        "--rows", type=int, default=None, help="rows per batch (default: the spec's rows_per_batch)"
    )
    gen.add_argument(
        "--end",
        type=dt.date.fromisoformat,
        default=dt.datetime.now(dt.UTC).date(),
        help="last day, YYYY-MM-DD",
    )
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--drift", type=float, default=0.0, help="0..1: how far distributions shift")
    gen.add_argument(
        "--degrade", type=float, default=0.0,
        help="0..1 (churn): a concept shift in one segment that the features barely show",
    )  # fmt: skip
    gen.add_argument(
        "--new-intent", type=float, default=0.0,
        help="0..1 (support_intent): the share of questions of a new intent, warranty",
    )  # fmt: skip
    gen.add_argument("--corrupt", action="store_true", help="break the contract (bad values, missing keys)")
    gen.add_argument(
        "--shuffle-labels", action="store_true", help="destroy the signal (a worse training set)"
    )
    gen.add_argument("--overwrite", action="store_true", help="rewrite batches that already exist")
    gen.add_argument("--out", help="write one batch (for --end) to this file instead of the lake")
    gen.add_argument("--lake", help="lake root (default MLCYCLE_LAKE_ROOT)")
    gen.set_defaults(fn=cmd_generate)

    for name, fn, helptext in (("champion", cmd_champion, "current champion and challenger"),):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("model")
        p.add_argument("--json", action="store_true")
        p.set_defaults(fn=fn)

    hook = sub.add_parser("webhook", help="register MLflow's alias webhook to the Airflow plugin")
    hook.add_argument("url", help="e.g. http://airflow-apiserver:8080/mlcycle/webhooks/mlflow")
    hook.set_defaults(fn=cmd_webhook)

    led = sub.add_parser("ledger", help="alias moves, newest first")
    led.add_argument("model", nargs="?")
    led.add_argument("--limit", type=int, default=50)
    led.add_argument("--json", action="store_true")
    led.set_defaults(fn=cmd_ledger)

    summ = sub.add_parser("summary", help="one paragraph per model")
    summ.add_argument("models", nargs="*")
    summ.set_defaults(fn=cmd_summary)

    chk = sub.add_parser("check", help="check specs, estimators and contracts without training")
    chk.add_argument("models", nargs="*", help="default: every model")
    chk.set_defaults(fn=cmd_check)

    ing = sub.add_parser("ingest", help="land a Parquet/CSV table as daily batches")
    ing.add_argument("model")
    ing.add_argument("file", help="a .parquet, .pq, .csv or .csv.gz file")
    ing.add_argument(
        "--date", type=dt.date.fromisoformat, help="land the whole file as this day's batch, YYYY-MM-DD"
    )
    ing.add_argument("--time-column", help="split by this column's UTC day (default: the spec's time column)")
    ing.add_argument("--replace", action="store_true", help="overwrite days that already have other rows")
    ing.add_argument("--lake", help="lake root (default MLCYCLE_LAKE_ROOT)")
    ing.set_defaults(fn=cmd_ingest)

    con = sub.add_parser("contract", help="data contracts").add_subparsers(dest="action", required=True)
    sug = con.add_parser("suggest", help="propose a contract from data, shown as a diff")
    sug.add_argument("model")
    sug.add_argument(
        "--from", dest="sources", nargs="+", metavar="PATH", help="Parquet batches (default: the lake's)"
    )
    sug.add_argument(
        "--margin", type=float, help="widen numeric ranges by this share of their width (default 0.5)"
    )
    sug.add_argument("--write", action="store_true", help="replace the contract file with the suggestion")
    sug.add_argument("--lake", help="lake root (default MLCYCLE_LAKE_ROOT)")
    sug.set_defaults(fn=cmd_contract_suggest)

    srv = sub.add_parser("serve", help="strict REST scoring of a model alias or version")
    srv.add_argument("model")
    srv.add_argument("--alias", default="champion", help="alias to serve (default champion)")
    srv.add_argument("--version", help="serve this version instead of the alias")
    srv.add_argument("--host", default="127.0.0.1")
    srv.add_argument("--port", type=int, default=5001)
    srv.add_argument("--max-body-mb", type=float, help="larger request bodies get HTTP 413 (default 5)")
    srv.set_defaults(fn=cmd_serve)

    pkg = sub.add_parser("package", help="package a model version for a deployment target")
    targets = pkg.add_subparsers(dest="target", required=True)
    lam = targets.add_parser("lambda", help="an AWS Lambda container context (Dockerfile, handler, model)")
    lam.add_argument("model")
    lam.add_argument("--alias", default="champion", help="alias to package (default champion)")
    lam.add_argument("--version", help="package this version instead of the alias")
    lam.add_argument(
        "--engine",
        choices=["onnx", "sklearn"],
        help="default: the ONNX twin when it passed its parity check, else scikit-learn",
    )
    lam.add_argument(
        "--out", required=True, help="directory to write (new, empty, or an earlier package to replace)"
    )
    lam.set_defaults(fn=cmd_package_lambda)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``argv`` (default ``sys.argv[1:]``) and return the exit code: 2 on an ``MlcycleError``."""
    root = logging.getLogger()
    if not root.handlers:
        # Warnings and errors only, whatever level a library gives its own logger (GX sets INFO
        # on one, which prints a line per validation about a temporary docs site).
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler.setLevel(logging.WARNING)
        root.addHandler(handler)
        root.setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except MlcycleError as exc:
        print(f"mlcycle {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
