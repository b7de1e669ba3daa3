"""Drift monitoring as pure computation: the reference profile, streamed window statistics,
per-feature statistics and the dataset verdict, label-free estimates and retrain guardrails.

``profile`` → ``window`` → ``statistics`` → ``verdict``; ``estimates``, ``reference`` and
``guardrails`` stand beside them.
"""
