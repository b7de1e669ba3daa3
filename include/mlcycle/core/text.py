"""What a token of text is, for every part that reads text: the vectorizer's word n-grams
(``mlcycle.ml.text``) and text drift's counts (``mlcycle.monitor.text``). No imports, so a
packaged handler or a DAG file can take it without the ML stack."""

from __future__ import annotations

# Words of two or more letters, digits or underscores (Unicode-aware): scikit-learn's default
# token_pattern, written out so drift counts exactly the tokens the model sees.
TOKEN_PATTERN = r"(?u)\b\w\w+\b"
