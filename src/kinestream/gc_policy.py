"""The daemon's garbage-collector policy: what exists once start-up is over is frozen.

CPython's cyclic collector walks every tracked container of a generation when it collects
it. The first full (generation 2) collection after start-up walks everything the imports,
the settings and the restored vehicles made, and it comes a few hundred milliseconds into
the traffic, when the first readings of a fleet promote their new trackers: measured
37-47 ms with the event loop held (benchmarks/RESULTS.md, "Latency tail"), the single
largest stall of a latency run. ``gc.freeze()`` moves those objects to the permanent
generation, which collections skip; reference counting still frees them as usual, and
only a reference cycle among them would never be collected (start-up builds none that
later become garbage).
"""

from __future__ import annotations

import gc


def freeze_startup_objects() -> int:
    """Collect start-up garbage, then exempt everything left from later collections.

    Call it once start-up is done (settings loaded, state restored, log replayed) and
    before traffic starts. Returns how many objects are frozen."""
    gc.collect()  # so the garbage start-up left is freed, not frozen
    gc.freeze()
    return gc.get_freeze_count()
