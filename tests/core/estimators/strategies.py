"""Hypothesis strategies for estimator inputs: irregular, increasing timestamps with restarts."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

EPOCH_S = 1_767_225_600.0


@st.composite
def reading_sequences(draw: st.DrawFn, max_size: int = 60) -> tuple[np.ndarray, ...]:
    """(ts, speed_mps, restart_before): strictly increasing epoch times, plausible speeds."""
    n = draw(st.integers(min_value=1, max_value=max_size))
    dts = draw(st.lists(st.floats(1e-3, 30.0), min_size=n, max_size=n))
    speeds = draw(st.lists(st.floats(0.0, 70.0), min_size=n, max_size=n))
    restarts = draw(st.lists(st.sampled_from([False] * 9 + [True]), min_size=n, max_size=n))
    ts = EPOCH_S + np.cumsum(np.array(dts))
    restart_before = np.array(restarts, dtype=bool)
    restart_before[0] = True
    return ts, np.array(speeds, dtype=np.float64), restart_before


@st.composite
def wild_sequences(draw: st.DrawFn) -> tuple[np.ndarray, ...]:
    """Any finite floats: repeated and decreasing timestamps, huge and negative speeds."""
    n = draw(st.integers(min_value=1, max_value=30))
    finite = st.floats(allow_nan=False, allow_infinity=False)
    ts = np.array(draw(st.lists(finite, min_size=n, max_size=n)), dtype=np.float64)
    speeds = np.array(draw(st.lists(finite, min_size=n, max_size=n)), dtype=np.float64)
    restart_before = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    restart_before[0] = True
    return ts, speeds, restart_before
