"""The numbers and the chart of the notification reports, from the processor's own reports.

A report is made from the metrics reports of :mod:`libs.metrics.reports` (the files ``GET
/metrics`` answers from): before reading, the camera's or area's reports are brought up to
date with its raw logs (:func:`libs.metrics.reports.update_entity_reports`, incremental,
idempotent and serialised with the metrics task), so a report never waits for the next
metrics run. The raw logs are those of the ``file_system_logger`` sections: a camera or area
without them reports "no data".

- Daily report of a camera: for the local day (App ``TimeZone``) before the one it is sent
  on, the social-distancing and occupancy numbers (samples, average and peak people,
  samples with a violation, average and peak violating people, average and peak occupancy),
  and a chart of the average people and average violating people per hour.
- Daily report of an area: average and peak occupancy, samples over capacity; the chart
  shows the average and peak occupancy per hour.
- Global report (daily: the previous day; weekly: the previous Monday to Sunday): one line
  per camera and area with the same numbers over the period, and a chart of each one's
  average and peak.

The chart is a PNG drawn with OpenCV (no plotting library).
"""

from __future__ import annotations

import html
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from libs.metrics.reports import (
    AREA_OCCUPANCY,
    AREA_REPORTS,
    CAMERA_OCCUPANCY,
    SOCIAL_DISTANCING,
    SOURCE_REPORTS,
    ReportKind,
    Totals,
    area_dir,
    camera_dir,
    configured_live_interval,
    hourly_path,
    read_report,
    reports_dir,
    update_entity_reports,
)

if TYPE_CHECKING:
    from libs.config.models import LookoutConfig

log = logging.getLogger(__name__)

CHART_SIZE = (800, 400)  # width, height
COLOURS = ((200, 120, 40), (40, 60, 220), (60, 170, 60))  # BGR: blue, red, green


@dataclass
class Report:
    """One report ready to send: e-mail subject and bodies, Slack text, chart."""

    subject: str
    text: str
    html: str
    slack_text: str
    png: bytes
    numbers: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------- numbers


def _refresh(config: LookoutConfig, folder: Path, entity: str) -> None:
    spec = SOURCE_REPORTS if entity == "camera" else AREA_REPORTS
    if not (folder / spec.folder).is_dir():
        return
    try:
        update_entity_reports(folder, spec, config.app.tzinfo, configured_live_interval(config))
    except Exception:  # the last reports written are still worth sending
        log.exception("notifications: reports of %s could not be updated", folder.name)


def _folder(config: LookoutConfig, entity: str, entity_id: str) -> Path:
    return camera_dir(config, entity_id) if entity == "camera" else area_dir(config, entity_id)


def hourly_totals(folder: Path, kind: ReportKind, day: date) -> dict[int, Totals]:
    """The kind's totals per local hour (0-23) of ``day`` (the two hours of a fall-back
    night are summed into one)."""
    out: dict[int, Totals] = {}
    for row in read_report(hourly_path(folder, kind, day)):
        try:
            hour = datetime.fromisoformat(row["Hour"]).hour
            totals = Totals.from_record(kind, row)
        except (KeyError, ValueError):
            continue
        out.setdefault(hour, kind.new_totals()).merge(totals)
    return out


def period_totals(folder: Path, kind: ReportKind, first: date, last: date) -> Totals:
    """The kind's totals over the local days ``first`` to ``last`` (from daily.csv)."""
    total = kind.new_totals()
    for row in read_report(reports_dir(folder) / kind.folder / "daily.csv"):
        try:
            day = date.fromisoformat(row["Date"])
            if first <= day <= last:
                total.merge(Totals.from_record(kind, row))
        except (KeyError, ValueError):
            continue
    return total


def _avg(t: Totals, k: int) -> float:
    return t.sums[k] / t.samples if t.samples else 0.0


def camera_numbers(sd: Totals, occ: Totals) -> dict[str, Any]:
    return {
        "samples": sd.samples,
        "avg_people": round(_avg(sd, 0), 3),
        "max_people": sd.maxes[0] if sd.samples else 0,
        "violation_samples": sd.counts[0] if sd.samples else 0,
        "avg_violating_people": round(_avg(sd, 1), 3),
        "max_violating_people": sd.maxes[1] if sd.samples else 0,
        "avg_occupancy": round(_avg(occ, 0), 3),
        "max_occupancy": occ.maxes[0] if occ.samples else 0,
    }


def area_numbers(occ: Totals) -> dict[str, Any]:
    return {
        "samples": occ.samples,
        "avg_occupancy": round(_avg(occ, 0), 3),
        "max_occupancy": occ.maxes[0] if occ.samples else 0,
        "over_capacity_samples": occ.counts[0] if occ.samples else 0,
    }


def _lines(entity: str, n: dict[str, Any]) -> list[str]:
    if not n["samples"]:
        return ["no data (no samples were logged)"]
    if entity == "camera":
        share = 100.0 * n["violation_samples"] / n["samples"]
        return [
            f"People: average {n['avg_people']:.2f}, peak {n['max_people']}",
            f"Samples with a distancing violation: {n['violation_samples']} of "
            f"{n['samples']} ({share:.1f}%)",
            f"Violating people: average {n['avg_violating_people']:.2f}, peak "
            f"{n['max_violating_people']}",
            f"Occupancy: average {n['avg_occupancy']:.2f}, peak {n['max_occupancy']}",
        ]
    share = 100.0 * n["over_capacity_samples"] / n["samples"]
    return [
        f"Occupancy: average {n['avg_occupancy']:.2f}, peak {n['max_occupancy']}",
        f"Samples over capacity: {n['over_capacity_samples']} of {n['samples']} "
        f"({share:.1f}%)",
    ]


def _html(title: str, blocks: Sequence[tuple[str, list[str]]], chart: bool) -> str:
    parts = [f"<h2>{html.escape(title)}</h2>"]
    for heading, lines in blocks:
        if heading:
            parts.append(f"<h3>{html.escape(heading)}</h3>")
        parts.append("<ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in lines) + "</ul>")
    if chart:
        parts.append('<p><img src="cid:chart" alt="chart"></p>')
    return "<html><body>" + "".join(parts) + "</body></html>"


def entity_day_report(config: LookoutConfig, entity: str, entity_id: str, name: str,
                      day: date) -> Report:
    """The daily report of one camera or area for local ``day``."""
    folder = _folder(config, entity, entity_id)
    _refresh(config, folder, entity)
    label = f"{'Camera' if entity == 'camera' else 'Area'} {name or entity_id}"
    hours = list(range(24))
    if entity == "camera":
        sd = hourly_totals(folder, SOCIAL_DISTANCING, day)
        occ = hourly_totals(folder, CAMERA_OCCUPANCY, day)
        day_sd, day_occ = SOCIAL_DISTANCING.new_totals(), CAMERA_OCCUPANCY.new_totals()
        for t in sd.values():
            day_sd.merge(t)
        for t in occ.values():
            day_occ.merge(t)
        numbers = camera_numbers(day_sd, day_occ)
        series = [("average people", [_avg(sd[h], 0) if h in sd else 0.0 for h in hours]),
                  ("average violating people",
                   [_avg(sd[h], 1) if h in sd else 0.0 for h in hours])]
    else:
        occ = hourly_totals(folder, AREA_OCCUPANCY, day)
        day_occ = AREA_OCCUPANCY.new_totals()
        for t in occ.values():
            day_occ.merge(t)
        numbers = area_numbers(day_occ)
        series = [("average occupancy", [_avg(occ[h], 0) if h in occ else 0.0 for h in hours]),
                  ("peak occupancy",
                   [float(occ[h].maxes[0]) if h in occ else 0.0 for h in hours])]
    numbers["date"] = day.isoformat()
    title = f"{label}: daily report for {day.isoformat()}"
    lines = _lines(entity, numbers)
    png = bar_chart_png(f"{label} - {day.isoformat()} per hour ({config.app.time_zone})",
                        [f"{h:02d}" for h in hours], series)
    text = title + "\n\n" + "\n".join(f"- {x}" for x in lines) + \
        "\n\nThe chart (per hour) is attached.\n"
    slack = f"*{title}*\n" + "\n".join(f"• {x}" for x in lines)
    return Report(title, text, _html(title, [("", lines)], True), slack, png, numbers)


def global_report(config: LookoutConfig, period: str, first: date, last: date) -> Report:
    """The global report (``period`` daily or weekly) over local days ``first``..``last``."""
    blocks: list[tuple[str, list[str]]] = []
    labels: list[str] = []
    avg_values: list[float] = []
    peak_values: list[float] = []
    numbers: dict[str, Any] = {"first": first.isoformat(), "last": last.isoformat(),
                               "cameras": {}, "areas": {}}
    for src in config.sources:
        folder = camera_dir(config, src.id)
        _refresh(config, folder, "camera")
        n = camera_numbers(period_totals(folder, SOCIAL_DISTANCING, first, last),
                           period_totals(folder, CAMERA_OCCUPANCY, first, last))
        numbers["cameras"][src.id] = n
        blocks.append((f"Camera {src.name or src.id}", _lines("camera", n)))
        labels.append(src.id)
        avg_values.append(float(n["avg_people"]))
        peak_values.append(float(n["max_people"]))
    for area in config.areas:
        folder = area_dir(config, area.id)
        _refresh(config, folder, "area")
        n = area_numbers(period_totals(folder, AREA_OCCUPANCY, first, last))
        numbers["areas"][area.id] = n
        blocks.append((f"Area {area.name or area.id}", _lines("area", n)))
        labels.append(f"area {area.id}")
        avg_values.append(float(n["avg_occupancy"]))
        peak_values.append(float(n["max_occupancy"]))
    span = first.isoformat() if first == last else f"{first.isoformat()} to {last.isoformat()}"
    title = f"Lookout {period} report for {span}"
    png = bar_chart_png(f"{period} report {span}: average and peak people",
                        labels, [("average", avg_values), ("peak", peak_values)])
    text_parts = [title, ""]
    for heading, lines in blocks:
        text_parts += [heading, *(f"- {x}" for x in lines), ""]
    text = "\n".join(text_parts) + "The chart is attached.\n"
    slack = f"*{title}*\n" + "\n".join(
        f"*{heading}*\n" + "\n".join(f"• {x}" for x in lines) for heading, lines in blocks)
    return Report(title, text, _html(title, blocks, True), slack, png, numbers)


# ------------------------------------------------------------------------------- chart


def _ascii(text: str) -> str:
    return text.encode("ascii", "replace").decode()


def _nice_top(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude = 10 ** np.floor(np.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return float(step * magnitude)
    return float(10 * magnitude)


def bar_chart_png(title: str, labels: Sequence[str],
                  series: Sequence[tuple[str, Sequence[float]]]) -> bytes:
    """A grouped bar chart (one group per label, one bar per series) as PNG bytes."""
    width, height = CHART_SIZE
    img = np.full((height, width, 3), 255, np.uint8)
    left, right, top, bottom = 60, 20, 50, 60
    plot_w, plot_h = width - left - right, height - top - bottom
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(img, _ascii(title)[:90], (left, 28), font, 0.55, (30, 30, 30), 1, cv2.LINE_AA)
    peak = max((v for _, values in series for v in values), default=0.0)
    ymax = _nice_top(float(peak))
    for k in range(5):  # grid lines and their values
        y = top + plot_h - int(plot_h * k / 4)
        cv2.line(img, (left, y), (left + plot_w, y), (225, 225, 225), 1)
        value = ymax * k / 4
        cv2.putText(img, f"{value:g}", (5, y + 4), font, 0.4, (90, 90, 90), 1, cv2.LINE_AA)
    cv2.line(img, (left, top + plot_h), (left + plot_w, top + plot_h), (60, 60, 60), 1)
    cv2.line(img, (left, top), (left, top + plot_h), (60, 60, 60), 1)
    groups = max(1, len(labels))
    group_w = plot_w / groups
    bar_w = max(1, int(group_w * 0.8 / max(1, len(series))))
    label_every = max(1, int(np.ceil(groups / 24)))
    for g, label in enumerate(labels):
        x0 = left + int(g * group_w + group_w * 0.1)
        for s, (_, values) in enumerate(series):
            value = float(values[g]) if g < len(values) else 0.0
            bar_h = round(plot_h * min(value, ymax) / ymax)
            if bar_h > 0:
                x = x0 + s * bar_w
                cv2.rectangle(img, (x, top + plot_h - bar_h), (x + bar_w - 1, top + plot_h - 1),
                              COLOURS[s % len(COLOURS)], -1)
        if g % label_every == 0:
            cv2.putText(img, _ascii(label)[:10], (x0, top + plot_h + 16), font, 0.38,
                        (60, 60, 60), 1, cv2.LINE_AA)
    x = left
    for s, (name, _) in enumerate(series):  # legend
        cv2.rectangle(img, (x, height - 22), (x + 12, height - 10), COLOURS[s % len(COLOURS)],
                      -1)
        cv2.putText(img, _ascii(name), (x + 18, height - 11), font, 0.45, (40, 40, 40), 1,
                    cv2.LINE_AA)
        x += 30 + 9 * len(name)
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise RuntimeError("the chart could not be encoded as PNG")
    return buf.tobytes()
