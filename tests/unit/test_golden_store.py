"""The session's golden store, as tests receive it: an independent copy with a loadable champion."""

from __future__ import annotations

import sqlite3

from mlcycle.store import registry
from tests.conftest import GOLDEN_MODEL


def test_a_copy_holds_no_path_of_the_golden_store(champion_env, golden_store):
    for db in ("mlflow.db", "ledger.db"):
        with sqlite3.connect(champion_env.root / db) as conn:
            dump = "\n".join(conn.iterdump())
        assert str(golden_store) not in dump, f"{db} still points into the golden store"
        assert str(champion_env.root) in dump
    for path in (champion_env.root / "lake").rglob("*.json"):
        assert str(golden_store) not in path.read_text(), path


def test_the_copied_champion_loads_and_scores_from_the_copy(champion_env):
    mlc = champion_env.mlc
    mv = registry.version_by_alias(mlc, GOLDEN_MODEL, registry.CHAMPION)
    assert mv is not None and str(mv.version) == "1"
    assert mv.tags[registry.TAG_HOLDOUT].startswith(champion_env.lake)
    model = registry.load_sklearn(mlc, GOLDEN_MODEL, str(mv.version))
    assert hasattr(model, "predict_proba")
    assert registry.load_profile(mlc, mv)["reference_performance"]["metrics"]
