"""Text features: how a spec's ``features.text`` columns enter the pipeline, and what the
evidence page shows of them (the terms that weigh most for each class).

Each text column gets its own branch of the ColumnTransformer: ``TextColumn`` turns the column
into documents (a missing value is an empty document, so one null question cannot fail a whole
batch; the contract is where nulls are refused), then word n-grams and character n-grams side
by side (``features.text_vectorizer``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sklearn.base import BaseEstimator, TransformerMixin

from mlcycle.core.text import TOKEN_PATTERN

if TYPE_CHECKING:
    import numpy as np
    from sklearn.pipeline import Pipeline

    from mlcycle.core.spec import ModelSpec, TextVectorSpec


class TextColumn(TransformerMixin, BaseEstimator):
    """One text column as a 1-D array of ``str`` documents; missing values become ``""``."""

    def fit(self, X: Any, y: Any = None) -> TextColumn:
        return self

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        import numpy as np

        return np.asarray(list(input_features) if input_features is not None else ["text"], dtype=object)

    def transform(self, X: Any) -> np.ndarray:
        import numpy as np
        import pandas as pd

        values = (
            X.iloc[:, 0] if isinstance(X, pd.DataFrame) else pd.Series(np.asarray(X, dtype=object).ravel())
        )
        return np.asarray(values.astype("string").fillna("").to_numpy(dtype=object), dtype=object)


def vectorizer(options: TextVectorSpec) -> Pipeline:
    """Documents of one column → word n-grams beside character n-grams, as ``options`` say."""
    from sklearn.feature_extraction.text import HashingVectorizer, TfidfVectorizer
    from sklearn.pipeline import FeatureUnion, Pipeline

    views: list[tuple[str, Any]] = []
    for name, analyzer, ngrams in (
        ("words", "word", options.word_ngrams),
        ("chars", "char_wb", options.char_ngrams),
    ):
        if ngrams is None:
            continue
        common: dict[str, Any] = {
            "analyzer": analyzer,
            "ngram_range": tuple(ngrams),
            "lowercase": options.lowercase,
        }
        if analyzer == "word":
            common["token_pattern"] = TOKEN_PATTERN
        if options.kind == "tfidf":
            view = TfidfVectorizer(
                **common,
                max_features=options.max_features,
                min_df=options.min_df,
                sublinear_tf=options.sublinear_tf,
            )
        else:  # stateless: nothing to fit, so an incremental model's columns never move
            view = HashingVectorizer(**common, n_features=options.max_features, alternate_sign=False)
        views.append((name, view))
    return Pipeline([("documents", TextColumn()), ("views", FeatureUnion(views))])


def top_terms(pipeline: Pipeline, spec: ModelSpec, *, per_class: int = 12) -> dict[str, Any]:
    """For each text column and class, the terms with the largest weight towards the class:
    a linear model's coefficients (one row per class; a binary model's single row is the
    positive class and its negative for class 0). Empty for other estimators (trees weigh
    columns, not terms) and for hashed features (no vocabulary to name)."""
    import numpy as np

    model = pipeline.named_steps["model"]
    coef = getattr(model, "coef_", None)
    if coef is None or spec.features.text_vectorizer.kind != "tfidf" or not spec.features.text:
        return {}
    names = np.asarray(pipeline.named_steps["preprocess"].get_feature_names_out())
    coef = np.asarray(coef)
    classes = [str(c) for c in model.classes_]
    if coef.shape[0] == 1:  # binary
        coef = np.vstack([-coef[0], coef[0]])
    out: dict[str, Any] = {}
    for column in spec.features.text:
        # Words are what a reviewer reads; character n-grams only when the spec has no words view.
        view = "words" if spec.features.text_vectorizer.word_ngrams is not None else "chars"
        prefix = f"text_{column}__{view}__"
        mask = np.char.startswith(names.astype(str), prefix)
        terms = np.char.replace(names[mask].astype(str), prefix, "")
        weights = coef[:, mask]
        out[column] = {
            cls: [
                [str(terms[i]), round(float(weights[k, i]), 4)]
                for i in np.argsort(-weights[k])[:per_class]
                if weights[k, i] > 0
            ]
            for k, cls in enumerate(classes)
        }
    return out


def drop_stop_words(pipeline: Pipeline) -> None:
    """Remove each fitted TF-IDF view's ``stop_words_``: every term cut by ``min_df`` or
    ``max_features``, kept only for introspection (scikit-learn says it may be deleted). With
    character n-grams it is most of the saved model: 44 MB of a 45 MB support_intent model."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    preprocess = pipeline.named_steps["preprocess"]
    for _, branch, _ in getattr(preprocess, "transformers_", []):
        for step in getattr(branch, "named_steps", {}).values():
            for _, view in getattr(step, "transformer_list", []):
                if isinstance(view, TfidfVectorizer) and hasattr(view, "stop_words_"):
                    del view.stop_words_
