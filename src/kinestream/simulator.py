"""A simulated fleet for the demo: bundled drive cycles and GPS logs, staggered, with noise.

Pure apart from reading the bundled CSVs: a vehicle's speed at step k is a function of its
profile, its starting point and a seeded random generator, so tests can pin it down. The
demo publishes one sample per vehicle per second at real pace with the current time as `ts`.
"""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources

MPH_TO_MPS = 0.44704
# Parked stretches of the day-long GPS logs are shortened to this, so demo vehicles keep
# driving; it stays below the default trip-end rule (180 s) so a red light never ends a trip.
MAX_IDLE_RUN_S = 60
MOVING_SPEED_MPS = 2.0


@dataclass(frozen=True, slots=True)
class DriveProfile:
    """A 1 Hz speed trace and the unit its vehicle reports in."""

    name: str
    speeds_mps: tuple[float, ...]
    unit: str = "m/s"  # "m/s" or "mph": what the simulated device sends on the wire


def _read_bundled(relative_path: str) -> list[dict[str, str]]:
    # utf-8-sig: wltc_3b.csv starts with a byte-order mark.
    text = resources.files("kinestream").joinpath("data", relative_path).read_bytes()
    return list(csv.DictReader(io.StringIO(text.decode("utf-8-sig"))))


def shorten_idle_runs(speeds_mps: Iterable[float], max_idle_s: int) -> tuple[float, ...]:
    """Drop zero-speed samples beyond the first max_idle_s of each standstill."""
    kept: list[float] = []
    idle_run = 0
    for speed in speeds_mps:
        idle_run = idle_run + 1 if speed <= 0.0 else 0
        if idle_run <= max_idle_s:
            kept.append(speed)
    return tuple(kept)


def load_cycle(name: str) -> DriveProfile:
    """A regulatory cycle from data/cycles/ (column cycMps, 1 Hz)."""
    rows = _read_bundled(f"cycles/{name}.csv")
    return DriveProfile(name, tuple(float(row["cycMps"]) for row in rows))


def load_gps_log(name: str) -> DriveProfile:
    """A real GPS day from data/recorded/ (speed_mph, 1 Hz fixes); gaps and parking squeezed."""
    rows = _read_bundled(f"recorded/{name}.csv")
    speeds = (float(row["speed_mph"]) * MPH_TO_MPS for row in rows)
    return DriveProfile(name, shorten_idle_runs(speeds, MAX_IDLE_RUN_S), unit="mph")


def bundled_profiles() -> list[DriveProfile]:
    """Every bundled trace: four regulatory cycles and two real GPS logs."""
    cycles = ("udds", "hwfet", "us06", "wltc_3b")
    gps_logs = ("cmap_4115957_1", "cmap_4116721_2")
    return [load_cycle(n) for n in cycles] + [load_gps_log(n) for n in gps_logs]


@dataclass(slots=True)
class SimulatedVehicle:
    """One vehicle replaying a profile from start_index, with sensor noise and lost fixes.

    Noise is Gaussian (GPS Doppler speed is good to about 0.1-0.2 m/s) and clipped at 0
    because a speed is a magnitude; a fix is lost with drop_probability (tunnels, multipath).
    """

    vehicle_id: str
    profile: DriveProfile
    start_index: int
    start_delay_s: float
    noise_sigma_mps: float = 0.15
    drop_probability: float = 0.01
    rng: random.Random = field(default_factory=random.Random)

    def true_speed_mps(self, step: int) -> float:
        speeds = self.profile.speeds_mps
        return speeds[(self.start_index + step) % len(speeds)]

    def sample_mps(self, step: int) -> float | None:
        """The measured speed at step (seconds since start), or None when the fix is lost."""
        if self.rng.random() < self.drop_probability:
            return None
        noisy = self.true_speed_mps(step) + self.rng.gauss(0.0, self.noise_sigma_mps)
        return max(0.0, noisy)

    def payload(self, ts: float, speed_mps: float) -> dict[str, float | str]:
        """The speed message this vehicle's device would send, in its own unit."""
        if self.profile.unit == "mph":
            return {"ts": round(ts, 3), "speed": round(speed_mps / MPH_TO_MPS, 3), "unit": "mph"}
        return {"ts": round(ts, 3), "speed": round(speed_mps, 3), "unit": "m/s"}


def moving_indices(profile: DriveProfile) -> list[int]:
    return [i for i, v in enumerate(profile.speeds_mps) if v > MOVING_SPEED_MPS]


def build_fleet(
    profiles: Sequence[DriveProfile], vehicles: int, seed: int = 0, period_s: float = 1.0
) -> list[SimulatedVehicle]:
    """`vehicles` vehicles cycling through the profiles, each starting mid-drive (so the demo
    shows motion within seconds) and offset in time so their messages interleave."""
    if vehicles < 1:
        raise ValueError(f"vehicles must be at least 1, got {vehicles}")
    master = random.Random(seed)
    fleet = []
    for number in range(vehicles):
        profile = profiles[number % len(profiles)]
        candidates = moving_indices(profile) or [0]
        fleet.append(
            SimulatedVehicle(
                vehicle_id=f"{profile.name.replace('_', '-')}-{number + 1}",
                profile=profile,
                start_index=master.choice(candidates),
                start_delay_s=period_s * number / vehicles,
                rng=random.Random(master.getrandbits(64)),
            )
        )
    return fleet
