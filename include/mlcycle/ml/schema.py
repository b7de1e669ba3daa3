"""The input schema a served version enforces, read from its fitted pipeline: the columns it was
trained on (in order), the type of each, whether a null is allowed and the known categories.

The pipeline is the one record of what the model saw that cannot drift from it: the spec may
have changed since the version was trained, and the MLflow signature declares every numeric
column ``double`` and knows nothing of nulls or categories. The spec says which columns are
numeric and which categorical (the split training used); a spec whose features are not the
version's own is refused.

A feature is **required** (a null is refused) unless the training data had nulls in it: the
numeric imputer's missing indicator lists the numeric columns with nulls at fit time, and a
categorical column had nulls when the categorical imputer's fill value is among the encoder's
categories. A model has learnt nothing about missing values where it never saw one; a null
there would be silently replaced by the training median.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from mlcycle.core.errors import SpecError

if TYPE_CHECKING:
    from mlcycle.core.spec import ModelSpec

NUMBER: Final = "number"
STRING: Final = "string"


@dataclass(frozen=True)
class Feature:
    """One input column: its kind in the spec, the JSON type a value must have, whether it may be
    null, and (categoricals) the categories the model was trained on."""

    name: str
    kind: Literal["numeric", "categorical", "text"]
    type: Literal["number", "string"]
    required: bool
    categories: tuple[Any, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "type": self.type,
            "required": self.required,
        }
        if self.kind == "categorical":
            out["categories"] = list(self.categories)
        return out

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Feature:
        """The feature ``to_dict`` wrote."""
        return cls(
            name=doc["name"],
            kind=doc["kind"],
            type=doc["type"],
            required=doc["required"],
            categories=tuple(doc.get("categories", ())),
        )


@dataclass(frozen=True)
class Schema:
    """The features a request must carry, in the order the model takes them, and a classifier's labels."""

    features: tuple[Feature, ...]
    classes: tuple[Any, ...] | None = None

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    def to_dict(self) -> dict[str, Any]:
        """The schema as JSON (a Lambda package's ``signature.json``): the features in the model's
        order, and a classifier's labels."""
        return {
            "features": [f.to_dict() for f in self.features],
            "classes": list(self.classes) if self.classes is not None else None,
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Schema:
        """The schema ``to_dict`` wrote."""
        classes = doc.get("classes")
        return cls(
            features=tuple(Feature.from_dict(f) for f in doc["features"]),
            classes=tuple(classes) if classes is not None else None,
        )


def schema_of(pipeline: Any, spec: ModelSpec) -> Schema:
    """The schema of a fitted pipeline built by ``mlcycle.ml.training.build_pipeline``; ``SpecError``
    when the spec's features are not the ones the version was trained on."""
    trained = [str(c) for c in getattr(pipeline, "feature_names_in_", [])]
    if sorted(trained) != sorted(spec.features.all):
        raise SpecError(
            f"model {spec.name}: this version was trained on features {trained} but the spec lists "
            f"{spec.features.all}; serve a version trained with the current spec (--version) or "
            "restore the spec's features"
        )
    nullable, categories = _fitted_facts(pipeline)
    features = []
    for name in trained:
        if name in spec.features.numeric:
            features.append(Feature(name, "numeric", NUMBER, required=name not in nullable))
            continue
        if name in spec.features.text:  # free text: any string (a null would score as an empty text)
            features.append(Feature(name, "text", STRING, required=True))
            continue
        if name not in categories:
            raise SpecError(
                f"model {spec.name}: {name} is categorical in the spec but the version's pipeline has no "
                "fitted OneHotEncoder for it, so its categories are unknown; retrain the model"
            )
        known = categories[name]
        value_type: Literal["number", "string"] = (
            NUMBER if known and not any(isinstance(c, str) for c in known) else STRING
        )
        features.append(
            Feature(name, "categorical", value_type, required=name not in nullable, categories=known)
        )
    classes = getattr(pipeline, "classes_", None)
    return Schema(
        features=tuple(features),
        classes=tuple(classes.tolist()) if spec.task.classifies and classes is not None else None,
    )


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _fitted_facts(pipeline: Any) -> tuple[set[str], dict[str, tuple[Any, ...]]]:
    """(features that had nulls in training, known categories per categorical feature), from the
    fitted ``ColumnTransformer`` of the pipeline (see the module docstring)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    steps = [s for _, s in pipeline.steps] if isinstance(pipeline, Pipeline) else [pipeline]
    pre = next((s for s in steps if isinstance(s, ColumnTransformer)), None)
    nullable: set[str] = set()
    categories: dict[str, tuple[Any, ...]] = {}
    for _, transformer, cols in pre.transformers_ if pre is not None else []:
        if isinstance(transformer, str):  # "drop" / "passthrough"
            continue
        columns = [str(c) for c in cols]
        parts = [s for _, s in transformer.steps] if isinstance(transformer, Pipeline) else [transformer]
        fill: list[Any] = []
        for part in parts:
            if isinstance(part, SimpleImputer):
                indicator = getattr(part, "indicator_", None)
                if indicator is not None:
                    nullable.update(columns[int(i)] for i in indicator.features_)
                if part.strategy == "constant":
                    fill = list(part.statistics_)
            elif isinstance(part, OneHotEncoder):
                for i, (column, cats) in enumerate(zip(columns, part.categories_, strict=True)):
                    values = cats.tolist()
                    # The imputer's fill value (or a NaN category, without an imputer) among the
                    # categories: the column had nulls at fit time. It is no category to send.
                    marker = fill[i] if i < len(fill) else None
                    if marker in values or any(_is_missing(v) for v in values):
                        nullable.add(column)
                    categories[column] = tuple(v for v in values if v != marker and not _is_missing(v))
    return nullable, categories
