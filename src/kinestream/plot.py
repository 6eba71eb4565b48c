"""The classic picture of differentiation, drawn from kinestream's own records.

Top panel: measured speed over time with the estimated acceleration (its slope) on a second
axis around a visible zero line, so acceleration crosses zero exactly where speed levels off.
Bottom panel: distance, the area under the speed curve. Trips are shaded and harsh events
marked. Selection (`select_view`) is plain Python; only `render_png` needs matplotlib, which
is imported lazily because it is the optional ``plot`` extra.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from kinestream.core.params import TrackerParams
from kinestream.core.records import HarshEvent, Kinematics, Record, TripSummary
from kinestream.errors import UsageError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

STANDARD_GRAVITY_MPS2 = 9.80665

SPEED_COLOUR = "#1f4e9c"
ACCELERATION_COLOUR = "#d9480f"
DISTANCE_COLOUR = "#2b8a3e"
TRIP_COLOUR = "#2b8a3e"
HARSH_ACCELERATION_COLOUR = "#c2255c"
HARSH_BRAKING_COLOUR = "#5f3dc4"


@dataclass(frozen=True, slots=True)
class PlotView:
    """Everything one figure shows: one vehicle's records over one time window."""

    vehicle_id: str
    kinematics: tuple[Kinematics, ...]
    trips: tuple[TripSummary, ...]
    # Each shown trip's 1-based number among the vehicle's trips: a short label for the figure
    # that --trip also accepts instead of the long id.
    trip_numbers: tuple[int, ...]
    events: tuple[HarshEvent, ...]
    method: str
    harsh_acceleration_mps2: float
    harsh_braking_mps2: float
    # Where lines break. Speed: the tracker bridges gaps up to max_gap_s with the trapezoid (a
    # straight line), so the speed line does too, and no further. Acceleration: no estimate
    # exists inside a gap (longer than min_gap_s), so its line breaks there.
    min_gap_s: float
    max_gap_s: float


@dataclass(frozen=True, slots=True)
class TimeAxis:
    """How elapsed seconds are shown: long windows read better in minutes or hours."""

    divisor_s: float
    label: str


def select_view(
    records: Iterable[Record],
    *,
    vehicle_id: str | None,
    trip_id: str | None,
    method: str,
    params: TrackerParams,
) -> PlotView:
    """Pick one vehicle (and optionally one of its trips) out of a run's records."""
    records = list(records)
    chosen = _choose_vehicle(records, vehicle_id)
    kinematics = [r for r in records if isinstance(r, Kinematics) and r.vehicle_id == chosen]
    trips = sorted(
        (r for r in records if isinstance(r, TripSummary) and r.vehicle_id == chosen),
        key=lambda t: t.start_ts,
    )
    numbers = {trip.trip_id: number for number, trip in enumerate(trips, start=1)}
    events = [r for r in records if isinstance(r, HarshEvent) and r.vehicle_id == chosen]
    if trip_id is not None:
        trip_id = _resolve_trip(trip_id, trips)
        start_ts, end_ts = _trip_window(trip_id, kinematics, trips, chosen)
        kinematics = [k for k in kinematics if start_ts <= k.ts <= end_ts]
        trips = [t for t in trips if t.trip_id == trip_id]
        events = [e for e in events if start_ts <= e.start_ts <= end_ts]
    if not kinematics:
        raise UsageError(f"vehicle {chosen!r} has no accepted readings to plot")
    return PlotView(
        vehicle_id=chosen,
        kinematics=tuple(sorted(kinematics, key=lambda k: k.ts)),
        trips=tuple(trips),
        trip_numbers=tuple(numbers[t.trip_id] for t in trips),
        events=tuple(events),
        method=method,
        harsh_acceleration_mps2=params.harsh_acceleration_g * STANDARD_GRAVITY_MPS2,
        harsh_braking_mps2=-params.harsh_braking_g * STANDARD_GRAVITY_MPS2,
        min_gap_s=params.min_gap_s,
        max_gap_s=params.max_gap_s,
    )


def _choose_vehicle(records: Sequence[Record], vehicle_id: str | None) -> str:
    present = sorted({r.vehicle_id for r in records if isinstance(r, Kinematics)})
    if vehicle_id is not None:
        if vehicle_id not in present:
            raise UsageError(f"vehicle {vehicle_id!r} is not in the input (present: {present})")
        return vehicle_id
    if len(present) == 1:
        return present[0]
    if not present:
        raise UsageError("the input has no accepted readings to plot")
    raise UsageError(f"the input has {len(present)} vehicles {present}: choose one with --vehicle")


def _resolve_trip(wanted: str, trips: Sequence[TripSummary]) -> str:
    """A trip id, or the number the figure labels it with (1 = the vehicle's first trip)."""
    if any(trip.trip_id == wanted for trip in trips) or not wanted.isdigit():
        return wanted
    number = int(wanted)
    return trips[number - 1].trip_id if 1 <= number <= len(trips) else wanted


def _trip_window(
    trip_id: str, kinematics: Sequence[Kinematics], trips: Sequence[TripSummary], vehicle_id: str
) -> tuple[float, float]:
    """The trip's event-time bounds: its summary if it ended, else its own readings."""
    for trip in trips:
        if trip.trip_id == trip_id:
            return trip.start_ts, trip.end_ts
    in_trip = [k.ts for k in kinematics if k.trip_id == trip_id]
    if not in_trip:
        known = sorted({t.trip_id for t in trips} | {k.trip_id for k in kinematics if k.trip_id})
        raise UsageError(
            f"vehicle {vehicle_id!r} has no trip {trip_id!r} "
            f"(give a trip id or a number 1..{len(trips)}; ids: {known})"
        )
    return min(in_trip), max(in_trip)


def describe_trips(view: PlotView) -> list[str]:
    """One line per trip shown: the number on the figure, the id, and what it was."""
    return [
        f"trip {number}: {trip.trip_id}  {_utc(trip.start_ts)} for {trip.duration_s:.0f} s, "
        f"{trip.distance_m / 1000.0:.2f} km, {trip.stops} stops, "
        f"{trip.harsh_accelerations + trip.harsh_brakings} harsh events, ended: {trip.end_reason}"
        for number, trip in zip(view.trip_numbers, view.trips, strict=True)
    ]


def time_axis_for(span_s: float) -> TimeAxis:
    if span_s <= 3600.0:
        return TimeAxis(1.0, "time (s)")
    if span_s <= 4 * 3600.0:
        return TimeAxis(60.0, "time (min)")
    return TimeAxis(3600.0, "time (h)")


def _with_gap_breaks(
    ts: Sequence[float], values: Sequence[float], max_gap_s: float
) -> tuple[list[float], list[float]]:
    """Insert NaN between samples further apart than max_gap_s so the line breaks there."""
    xs: list[float] = []
    ys: list[float] = []
    for index, (t, y) in enumerate(zip(ts, values, strict=True)):
        if index and t - ts[index - 1] > max_gap_s:
            xs.append(math.nan)
            ys.append(math.nan)
        xs.append(t)
        ys.append(y)
    return xs, ys


def _missing_as_nan(value: float | None) -> float:
    return math.nan if value is None else value


def render_png(view: PlotView, out_path: Path) -> None:
    """Draw the view and write it as a PNG (matplotlib's Agg canvas, no display needed)."""
    figure_class, canvas_class = _matplotlib()
    figure = figure_class(figsize=(12.0, 7.5), dpi=110, layout="constrained")
    canvas_class(figure)
    _draw(figure, view)
    figure.savefig(out_path, format="png")


def _matplotlib() -> tuple[type[Figure], type]:
    """Import matplotlib only when a figure is drawn: it is the optional ``plot`` extra."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise UsageError(
            "plotting needs matplotlib: install kinestream[plot] "
            "(python -m pip install 'kinestream[plot]')"
        ) from error
    return Figure, FigureCanvasAgg


def _draw(figure: Figure, view: PlotView) -> None:
    t0 = view.kinematics[0].ts
    axis = time_axis_for(view.kinematics[-1].ts - t0)
    speed_ax, distance_ax = figure.subplots(
        2, 1, sharex=True, gridspec_kw={"height_ratios": [2.2, 1.0]}
    )
    acceleration_ax = speed_ax.twinx()
    _draw_speed_and_acceleration(speed_ax, acceleration_ax, view, t0, axis)
    _draw_distance(distance_ax, view, t0, axis)
    for ax in (speed_ax, distance_ax):
        _shade_trips(ax, view, t0, axis, label_trips=ax is speed_ax)
    _mark_events(speed_ax, acceleration_ax, view, t0, axis)
    # Trip and event spans may reach past the readings shown (--trip, a partial view): the
    # readings, not the marks, set the time range.
    span = (view.kinematics[-1].ts - t0) / axis.divisor_s
    speed_ax.set_xlim(-0.01 * span, span * 1.01 or 1.0)
    distance_ax.set_xlabel(axis.label + f" since {_utc(t0)}")
    figure.suptitle(
        f"{view.vehicle_id}: speed, its slope (acceleration, {view.method}) "
        "and the area under it (distance)"
    )
    _legend(figure, view)


def _elapsed(ts: Iterable[float], t0: float, axis: TimeAxis) -> list[float]:
    return [(t - t0) / axis.divisor_s for t in ts]


def _draw_speed_and_acceleration(
    speed_ax: Axes, acceleration_ax: Axes, view: PlotView, t0: float, axis: TimeAxis
) -> None:
    ts = [k.ts for k in view.kinematics]
    speed_x, speed_y = _with_gap_breaks(ts, [k.speed_mps for k in view.kinematics], view.max_gap_s)
    accel_x, accel_y = _with_gap_breaks(
        ts, [_missing_as_nan(k.acceleration_mps2) for k in view.kinematics], view.min_gap_s
    )
    speed_ax.plot(_elapsed(speed_x, t0, axis), speed_y, color=SPEED_COLOUR, lw=1.4, label="speed")
    acceleration_ax.plot(
        _elapsed(accel_x, t0, axis),
        accel_y,
        color=ACCELERATION_COLOUR,
        lw=0.9,
        alpha=0.9,
        label="acceleration (dv/dt)",
    )
    # The zero line is the point of the picture: the slope is zero where speed is flat.
    acceleration_ax.axhline(0.0, color=ACCELERATION_COLOUR, lw=0.8, ls="-", alpha=0.6)
    for threshold in (view.harsh_acceleration_mps2, view.harsh_braking_mps2):
        acceleration_ax.axhline(threshold, color="0.45", lw=0.8, ls=":")
    _symmetric_limits(acceleration_ax, accel_y)
    # Speed is the measured curve the slope belongs to: draw it above its derivative.
    acceleration_ax.set_zorder(speed_ax.get_zorder() - 1)
    speed_ax.patch.set_visible(False)
    speed_ax.set_ylim(bottom=0.0, top=max(1.0, max(speed_y, key=_nan_low) * 1.08))
    speed_ax.set_ylabel("speed (m/s)", color=SPEED_COLOUR)
    acceleration_ax.set_ylabel("acceleration (m/s²)", color=ACCELERATION_COLOUR)
    speed_ax.grid(True, alpha=0.25)


def _nan_low(value: float) -> float:
    return -math.inf if math.isnan(value) else value


def _symmetric_limits(ax: Axes, values: Sequence[float]) -> None:
    """Centre the acceleration axis on zero and scale it to the data.

    The harsh thresholds do not widen it: on a gentle cycle they would squash the curve flat;
    off-scale they are simply not reached (the legend gives their values).
    """
    reach = max([abs(v) for v in values if not math.isnan(v)] + [0.5])
    ax.set_ylim(-reach * 1.1, reach * 1.1)


def _draw_distance(ax: Axes, view: PlotView, t0: float, axis: TimeAxis) -> None:
    start_m = view.kinematics[0].distance_m
    ts = [k.ts for k in view.kinematics]
    km = [(k.distance_m - start_m) / 1000.0 for k in view.kinematics]
    ax.plot(_elapsed(ts, t0, axis), km, color=DISTANCE_COLOUR, lw=1.4)
    ax.set_ylabel("distance ∫v dt (km)", color=DISTANCE_COLOUR)
    ax.set_ylim(bottom=0.0)
    ax.grid(True, alpha=0.25)


def _shade_trips(ax: Axes, view: PlotView, t0: float, axis: TimeAxis, *, label_trips: bool) -> None:
    window_end = (view.kinematics[-1].ts - t0) / axis.divisor_s
    for index, (trip, number) in enumerate(zip(view.trips, view.trip_numbers, strict=True)):
        start, end = _elapsed((trip.start_ts, trip.end_ts), t0, axis)
        ax.axvspan(start, end, color=TRIP_COLOUR, alpha=0.07, lw=0)
        ax.axvline(start, color=TRIP_COLOUR, lw=1.0, ls="--")
        ax.axvline(end, color=TRIP_COLOUR, lw=1.0, ls=":")
        if label_trips and start <= window_end and end >= 0.0:
            # A trip that began before the window is labelled at the window's left edge;
            # labels alternate between two heights so that short neighbours stay legible.
            ax.annotate(
                f"trip {number}",
                xy=(max(start, 0.0), 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(3, -12 - 11 * (index % 2)),
                textcoords="offset points",
                fontsize=8,
                color=TRIP_COLOUR,
            )


def _mark_events(
    speed_ax: Axes, acceleration_ax: Axes, view: PlotView, t0: float, axis: TimeAxis
) -> None:
    for event in view.events:
        braking = event.type == "harsh_braking"
        colour = HARSH_BRAKING_COLOUR if braking else HARSH_ACCELERATION_COLOUR
        start, end = _elapsed((event.start_ts, event.end_ts), t0, axis)
        speed_ax.axvspan(start, end, color=colour, alpha=0.25, lw=0)
        acceleration_ax.plot(
            [(start + end) / 2.0],
            [event.peak_g * STANDARD_GRAVITY_MPS2],
            marker="v" if braking else "^",
            color=colour,
            ms=8,
            ls="none",
        )


def _legend(figure: Figure, view: PlotView) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    thresholds_g = (
        view.harsh_acceleration_mps2 / STANDARD_GRAVITY_MPS2,
        view.harsh_braking_mps2 / STANDARD_GRAVITY_MPS2,
    )
    handles = [
        Line2D([], [], color=SPEED_COLOUR, lw=1.4, label="speed (measured)"),
        Line2D([], [], color=ACCELERATION_COLOUR, lw=0.9, label="acceleration = dv/dt"),
        Line2D(
            [],
            [],
            color="0.45",
            lw=0.8,
            ls=":",
            label=f"harsh thresholds ({thresholds_g[0]:+.2f} g / {thresholds_g[1]:+.2f} g)",
        ),
        Patch(color=TRIP_COLOUR, alpha=0.25, label="trip (-- start, ·· end)"),
        Line2D(
            [], [], color=HARSH_ACCELERATION_COLOUR, marker="^", ls="none", label="harsh accel."
        ),
        Line2D([], [], color=HARSH_BRAKING_COLOUR, marker="v", ls="none", label="harsh braking"),
    ]
    # Outside the axes: any spot inside would hide part of a curve on some input.
    figure.legend(handles=handles, loc="outside lower center", fontsize=8, ncols=6, frameon=False)


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
