"""One module per CLI command; each exposes ``register(subparsers)`` setting ``handler``.

``SUMMARIES`` is each command's line in ``kinestream --help`` (the modules register with it):
the CLI lists every command from here and imports only the module of the one it runs.
"""

from __future__ import annotations

SUMMARIES: dict[str, str] = {
    "process": "process recorded logs (.jsonl) or CSV files offline",
    "plot": "draw speed, acceleration and distance of one vehicle to a PNG",
    "run": "run the daemon: MQTT speed readings in, kinematics, trips and events out",
    "state": "list, show or reset vehicles saved by the daemon",
    "record": "capture live MQTT messages to a recorded log (.jsonl)",
    "replay": "publish recorded logs or CSV files to a broker (QoS 1)",
    "demo": "run everything locally: broker, simulated fleet, daemon, live table",
}
