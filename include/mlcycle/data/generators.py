"""Seeded generators of realistic daily batches for the shipped example models.

Each batch is reproducible from (generator, day, seed). Options inject what real
pipelines meet: ``drift`` shifts feature distributions (and the relationship to the
label a little), ``corrupt`` breaks the contract (impossible values, missing keys,
unknown categories), ``shuffle_labels`` destroys the signal (a deliberately worse
training set).
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Callable

    import numpy as np
    import pandas as pd


def _rng(name: str, day: dt.date, seed: int) -> np.random.Generator:
    import numpy as np

    return np.random.default_rng([zlib.crc32(name.encode()), day.toordinal(), seed])


def _with_nulls(rng: np.random.Generator, values: np.ndarray, rate: float) -> np.ndarray:
    out = values.astype("float64")
    out[rng.random(len(out)) < rate] = float("nan")
    return out


def churn_batch(
    day: dt.date, rows: int, *, seed: int = 0, drift: float = 0.0, degrade: float = 0.0
) -> pd.DataFrame:
    """Telecom subscribers observed on ``day``; ``churned`` = cancelled within 30 days.

    ``degrade`` is a concept shift in one segment (customers in the south, a quarter of the
    rows): a new competitor there makes churn follow the usual signals less (the logit is
    flattened by up to 90 %), and the segment's tenure and charges come a little closer to
    typical values, so the marginal distributions barely move while the model is right less
    often. Only labels show it: a label-free estimate reads the scores, which barely change."""
    import numpy as np
    import pandas as pd

    rng = _rng("churn", day, seed)
    contract = rng.choice(
        ["month-to-month", "one-year", "two-year"],
        rows,
        p=np.array([0.55, 0.25, 0.20]) * (1 - drift) + np.array([0.80, 0.15, 0.05]) * drift,
    )
    internet = rng.choice(["fiber", "dsl", "none"], rows, p=[0.45, 0.35, 0.20])
    payment = rng.choice(
        ["electronic-check", "mailed-check", "bank-transfer", "credit-card"], rows, p=[0.35, 0.2, 0.22, 0.23]
    )
    region = rng.choice(["north", "south", "east", "west"], rows, p=[0.3, 0.25, 0.25, 0.2])
    tenure = np.clip(rng.gamma(1.6, 14.0, rows) * (1 - 0.5 * drift), 0, 72).round().astype("int64")
    base_charge = np.where(internet == "fiber", 85.0, np.where(internet == "dsl", 55.0, 22.0))
    monthly = np.clip(base_charge + rng.normal(0, 12, rows) + 25 * drift, 18.0, 150.0).round(2)
    total = (monthly * np.maximum(tenure, 1) * rng.uniform(0.9, 1.05, rows)).round(2)
    support_calls = rng.poisson(1.2 + 1.5 * drift, rows).astype("int64")
    age = np.clip(rng.normal(46, 15, rows), 18, 90).round()
    segment = (region == "south") & (degrade > 0)
    if segment.any():  # a little closer to the typical customer
        pull = 0.5 * degrade
        tenure = np.where(segment, np.round(tenure * (1 - pull) + 16 * pull), tenure).astype("int64")
        monthly = np.where(segment, (monthly * (1 - pull) + 70 * pull).round(2), monthly)
        total = (monthly * np.maximum(tenure, 1) * rng.uniform(0.9, 1.05, rows)).round(2)
    logit = (
        -1.6
        + 1.3 * (contract == "month-to-month")
        - 0.9 * (contract == "two-year")
        + 0.55 * (internet == "fiber")
        + 0.45 * (payment == "electronic-check")
        - 0.045 * tenure
        + 0.018 * (monthly - 65)
        + 0.35 * support_calls
        - 0.006 * (age - 46)
    )
    logit = np.where(segment, -0.6 + (logit + 0.6) * (1 - 0.9 * degrade), logit)
    churned = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype("int64")
    return pd.DataFrame(
        {
            # Unique across days whatever the batch size: the day, then the row number.
            "customer_id": [f"C{day:%Y%m%d}{i:09d}" for i in range(rows)],
            "event_date": pd.Series([day] * rows, dtype="datetime64[ms]"),
            "tenure_months": tenure,
            "monthly_charges": monthly,
            # New customers have no billing history yet: total is missing for ~2 %.
            "total_charges": _with_nulls(rng, total, 0.02),
            "support_calls": support_calls,
            "age": _with_nulls(rng, age, 0.04),
            "contract": contract,
            "internet_service": internet,
            "payment_method": payment,
            "region": region,
            "churned": churned,
        }
    )


def demand_batch(day: dt.date, rows: int, *, seed: int = 0, drift: float = 0.0) -> pd.DataFrame:
    """Daily unit sales per store and SKU; ``units_sold`` is the target."""
    import numpy as np
    import pandas as pd

    rng = _rng("demand", day, seed)
    category = rng.choice(["grocery", "beverages", "household", "snacks", "frozen"], rows)
    store_type = rng.choice(["urban", "suburban", "rural"], rows, p=[0.45, 0.35, 0.2])
    region = rng.choice(["north", "south", "east", "west"], rows)
    base_price = {"grocery": 4.0, "beverages": 2.5, "household": 8.0, "snacks": 3.0, "frozen": 6.0}
    list_price = np.array([base_price[c] for c in category]) * rng.uniform(0.7, 1.4, rows)
    promo = (rng.random(rows) < 0.15 + 0.25 * drift).astype("int64")
    price = (list_price * np.where(promo == 1, rng.uniform(0.7, 0.9, rows), 1.0) * (1 + 0.3 * drift)).round(2)
    temperature = rng.normal(16 + 8 * np.sin(2 * np.pi * day.timetuple().tm_yday / 365) + 6 * drift, 4, rows)
    weekend = int(day.weekday() >= 5)
    traffic = np.where(store_type == "urban", 1.4, np.where(store_type == "suburban", 1.0, 0.6))
    seasonal = np.where(
        category == "beverages",
        1 + 0.04 * (temperature - 16),
        np.where(category == "frozen", 1 + 0.03 * (temperature - 16), 1.0),
    )
    expected = (
        22 * traffic * seasonal * (1 + 0.6 * promo) * (1 + 0.25 * weekend) * (list_price / price) ** 1.3
    )
    units = rng.poisson(np.clip(expected, 0.1, None)).astype("float64")
    stores = rng.integers(1, 60, rows)
    skus = rng.integers(1000, 1400, rows)
    return pd.DataFrame(
        {
            "row_id": [
                f"{day:%Y%m%d}-{s:03d}-{k}-{i}" for i, (s, k) in enumerate(zip(stores, skus, strict=True))
            ],
            "sale_date": pd.Series([day] * rows, dtype="datetime64[ms]"),
            "store_id": stores.astype("int64"),
            "price": price,
            "list_price": list_price.round(2),
            "promo": promo,
            # Weather feeds drop out now and then.
            "temperature": _with_nulls(rng, temperature.round(1), 0.03),
            "is_weekend": np.full(rows, weekend, dtype="int64"),
            "category": category,
            "store_type": store_type,
            "region": region,
            "units_sold": units,
        }
    )


GENERATORS: dict[str, tuple[Callable[..., pd.DataFrame], str, str, str]] = {
    # name: (function, key column, target, a numeric column to corrupt)
    "churn": (churn_batch, "customer_id", "churned", "monthly_charges"),
    "demand": (demand_batch, "row_id", "units_sold", "price"),
}


def generate_batch(
    generator: str,
    day: dt.date,
    rows: int,
    *,
    seed: int = 0,
    drift: float = 0.0,
    corrupt: bool = False,
    shuffle_labels: bool = False,
    degrade: float = 0.0,
) -> pd.DataFrame:
    """One day of ``generator`` data, reproducible from (day, seed, options); ``ValueError`` on bad input.

    ``corrupt`` damages about 5 % of the rows; ``shuffle_labels`` permutes the target;
    ``degrade`` (churn) is a concept shift in a segment (see ``churn_batch``)."""
    import pandas as pd

    if generator not in GENERATORS:
        raise ValueError(f"unknown generator {generator!r}; choose one of {sorted(GENERATORS)}")
    if not 0.0 <= drift <= 1.0:
        raise ValueError(f"drift must be between 0 and 1, got {drift}")
    if rows < 1:
        raise ValueError(f"rows must be positive, got {rows}")
    if not 0.0 <= degrade <= 1.0:
        raise ValueError(f"degrade must be between 0 and 1, got {degrade}")
    fn, key, target, numeric = GENERATORS[generator]
    if degrade and fn is not churn_batch:
        raise ValueError(f"degrade is a concept shift of the churn generator; {generator!r} has none")
    df = fn(day, rows, seed=seed, drift=drift, **({"degrade": degrade} if degrade else {}))
    rng = _rng(generator + "-options", day, seed)
    if shuffle_labels:
        df[target] = rng.permutation(df[target].to_numpy())
    if corrupt:
        n = max(1, rows // 20)
        idx = rng.choice(rows, n, replace=False)
        df.loc[idx, numeric] = -df.loc[idx, numeric].abs() - 1000.0
        df[key] = df[key].astype("object")
        df.loc[idx[: max(1, n // 2)], key] = None
        cat = next(c for c in df.columns if pd.api.types.is_string_dtype(df[c]) and c != key)
        df.loc[idx[: max(1, n // 3)], cat] = "???"
    return df
