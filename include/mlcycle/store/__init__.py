"""Durable state outside the lake: the MLflow tracking server and registry (runs, versions,
tags, aliases) and the SQL promotion ledger and retrain-decision record."""
