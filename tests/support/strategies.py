"""Hypothesis strategies shared by the property tests and the fault suite's fuzzers."""

from __future__ import annotations

import hypothesis.strategies as st

# Any JSON value, nested a little: what a client can put in a body or an event argument.
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)
