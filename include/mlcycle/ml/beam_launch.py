"""The script Airflow's Beam hook runs: ``python beam_launch.py --job=<job.json> --runner=...``.

A file of its own because the hook runs a file, not a module; everything it runs lives in
``mlcycle.ml.beam_scoring``, so Beam's worker processes import the DoFns from the package
instead of unpickling them from ``__main__``.
"""

from __future__ import annotations

from mlcycle.ml.beam_scoring import main

if __name__ == "__main__":
    main()
