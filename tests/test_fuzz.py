"""Fuzzing the data loader with random JSON shapes and random bytes: it either returns validated data or raises
the project's own one-line error, never anything else."""

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from knowundo.data.knowundo import DataSource, load_domain
from knowundo.data.validate import validate_items, validate_scope
from knowundo.errors import KnowUndoError

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=12)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=16,
)
items = json_values | st.fixed_dictionaries(
    {"text": json_values | st.text(max_size=20), "labels": json_values | st.text(max_size=20)},
    optional={"category": json_values, "facts": json_values},
)
scopes = json_values | st.fixed_dictionaries(
    {"train": st.lists(items, max_size=4) | json_values, "val": st.lists(items, max_size=4) | json_values},
    optional={"extra": json_values},
)


def _only_our_error(call) -> None:
    try:
        call()
    except KnowUndoError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=300, deadline=None)
@given(scopes)
def test_validation_of_any_json_shape_raises_only_our_error(obj):
    _only_our_error(lambda: validate_scope(obj, "fuzz/unlearn.json"))
    _only_our_error(lambda: validate_items(obj, "fuzz general"))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        scopes.map(lambda o: json.dumps(o).encode()),
        st.binary(max_size=200),
        st.integers(1, 5000).map(lambda depth: b"[" * depth + b"]" * depth),
    )
)
def test_local_files_of_any_content_load_or_raise_only_our_error(content):
    with tempfile.TemporaryDirectory() as tmp:
        for scope in ("unlearn", "retention"):
            path = Path(tmp) / "privacy" / f"{scope}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        _only_our_error(lambda: load_domain(DataSource(kind="local", path=tmp), "privacy"))
