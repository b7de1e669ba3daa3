"""The floor every other layer stands on: model specs, deployment settings, domain errors,
the identity of a run and the typed results steps hand to each other. Imports nothing
heavier than pydantic."""
