"""Strict REST serving of one registered model version: MLflow's scoring protocol
(``/invocations``, ``/ping``, ``/health``) with every request checked against what the model
was trained on, refused with a 400 naming the field, the rows and what was expected."""
