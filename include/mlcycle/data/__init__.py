"""Data at rest: the lake (one root, laid out per model), contracts (Great Expectations
suites) and the seeded generators of the demo data."""
