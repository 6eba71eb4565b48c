"""Tracker parameters: plain, frozen, validated once at the edge (config.py) and passed down."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Method(StrEnum):
    KALMAN = "kalman"
    POLYFIT = "polyfit"
    DIFFERENCE = "difference"


@dataclass(frozen=True, slots=True)
class EstimatorParams:
    method: Method = Method.KALMAN
    # Kalman: white-jerk power spectral density (m²/s⁵) and speed measurement noise (m/s).
    # Chosen on the noisy regulatory cycles (issue 2 "Noise", benchmarks/accuracy.py): σ is the
    # sensor noise; a larger jerk PSD follows changes faster but passes more noise. At 10 Hz,
    # PSD 0.1 → 0.3 → 1 → 3 moves the UDDS acceleration RMSE 0.23 → 0.24 → 0.31 → 0.43 m/s²
    # while the lag falls ~0.55 → 0.45 → 0.35 → 0.25 s; US06 (the most dynamic) is best near
    # 0.3 (0.37 m/s²), and at 1 Hz 0.3 still beats `difference` on every cycle.
    kalman_jerk_psd_m2ps5: float = 0.3
    kalman_speed_sigma_mps: float = 0.2
    # Polyfit: causal quadratic over this trailing time window (s). Shorter follows faster and
    # is noisier: 2 s → 0.34 m/s² RMSE / 0.37 s lag on UDDS at 10 Hz, 3 s → 0.29 / 0.56,
    # 4 s → 0.31 / 0.76; at 1 Hz a 3 s window holds only 3-4 points and the endpoint slope of
    # a quadratic through them is noisier than `difference` (0.44 vs 0.31), 4 s gives 0.33.
    polyfit_window_s: float = 4.0


@dataclass(frozen=True, slots=True)
class TrackerParams:
    estimator: EstimatorParams = EstimatorParams()
    # Ordering: hold readings this long in event time to reorder them (0 = as they arrive).
    reorder_bound_s: float = 0.0
    duplicate_memory: int = 16
    # Validation. Event times before min_timestamp_s (2000-01-01) are refused; at or above
    # max_timestamp_s (year 5138 in seconds, 1973 in milliseconds) they look like milliseconds.
    # Offline inputs with relative times (drive cycles starting at 0 s) lower min_timestamp_s.
    min_timestamp_s: float = 946_684_800.0
    max_timestamp_s: float = 1e11
    min_speed_mps: float = -0.5  # between this and 0 is sensor noise: clamped to 0
    max_speed_mps: float = 120.0
    max_accel_mps2: float = 15.0
    step_noise_allowance_mps: float = 1.5
    step_noise_sigmas: float = 3.0  # plus this many prediction sigmas (fast noisy sensors)
    # Gaps.
    min_gap_s: float = 5.0
    max_gap_s: float = 120.0
    # Trips.
    trip_start_speed_mps: float = 2.0
    trip_stop_speed_mps: float = 0.5
    trip_end_stop_s: float = 180.0
    # Harsh events (light-vehicle defaults: GPS Insight's published thresholds).
    harsh_acceleration_g: float = 0.37
    harsh_braking_g: float = 0.38
    harsh_min_duration_s: float = 0.5
    harsh_exit_fraction: float = 0.8  # hysteresis: an event ends below this share of the threshold

    def __post_init__(self) -> None:
        """Refuse combinations the tracker cannot honour, naming the values."""
        problems = []
        if self.duplicate_memory < 1:
            problems.append(f"duplicate_memory must be at least 1, got {self.duplicate_memory}")
        if not self.reorder_bound_s >= 0.0:
            problems.append(f"reorder_bound_s must be >= 0, got {self.reorder_bound_s}")
        if not 0.0 <= self.min_gap_s <= self.max_gap_s:
            problems.append(
                f"need 0 <= min_gap_s <= max_gap_s, got {self.min_gap_s} and {self.max_gap_s}"
            )
        if not self.trip_stop_speed_mps <= self.trip_start_speed_mps:
            problems.append(
                f"trip_stop_speed_mps {self.trip_stop_speed_mps} is above "
                f"trip_start_speed_mps {self.trip_start_speed_mps}"
            )
        if not 0.0 < self.harsh_exit_fraction <= 1.0:
            problems.append(
                f"harsh_exit_fraction must be in (0, 1], got {self.harsh_exit_fraction}"
            )
        if problems:
            raise ValueError("; ".join(problems))
