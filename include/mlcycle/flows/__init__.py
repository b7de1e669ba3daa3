"""The use-cases operators call: ``train`` (resolve → validate → train → evaluate → gate →
promote), ``score`` (choose → plan → score partitions → finalize) and ``monitor`` (check).

Each step takes explicit inputs (spec, run identity, URIs, a ready MLflow client), returns a
typed result from ``mlcycle.core.results``, and is safe to run again for the same run.
"""
