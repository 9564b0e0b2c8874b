"""Report kinds are declared once: the report engine, the ``/metrics`` routes and
``GET /metrics/kinds`` are all derived from the same ``ReportKind`` declarations.

A kind declared in a test-local registry gets its report files (from the real report engine),
its four routes and its listing; the real table is checked against the registry by
introspection (identity of the declarations, no second copy of a name, a column list or a
description anywhere in the API modules).
"""

from __future__ import annotations

import csv
import dataclasses
import os
import sys
import time as clock
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient

import api.routers.audience as audience_router
import api.routers.export as export_router
import api.routers.metrics as metrics_router
from api.app import create_app
from libs.config import load_config
from libs.metrics import reports
from libs.metrics.reports import (
    KEY_COLUMNS,
    PERIODS,
    REPORTS,
    Counter,
    Measure,
    RawLogSpec,
    ReportKind,
    ReportRegistry,
    camera_dir,
    describe,
    report_kinds,
    update_entity_reports,
)

PASSWORD = "password123"
QUEUE = ReportKind(
    "queue",
    (Measure("Waiting", "Waiting"), Measure("Served", "Served")),
    (Counter("QueueSamples", "Waiting"),),
    "People waiting in the queue and people served (a test-only kind).",
)
QUEUE_LOG = RawLogSpec("queue_log", (QUEUE,))
DAY = date(2024, 3, 4)
# (local time, waiting, served): two samples at 09:xx, one at 10:xx (UTC, the config's zone)
SAMPLES = ((time(9, 0), 3, 1), (time(9, 30), 0, 2), (time(10, 15), 5, 0))


@pytest.fixture
def queue_api(x86_config: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """The real app plus a router made from a registry holding only the test kind, over
    reports written by the real report engine from a raw log of that kind."""
    registry = ReportRegistry()
    registry.register("camera", QUEUE_LOG)
    os.utime(x86_config, (clock.time() - 60, clock.time() - 60))
    config = load_config(x86_config, check_files=False)
    entity = camera_dir(config, "pets-view1")
    raw = entity / QUEUE_LOG.folder / f"{DAY.isoformat()}.csv"
    raw.parent.mkdir(parents=True)
    with open(raw, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["Timestamp", "Waiting", "Served"])
        for at, waiting, served in SAMPLES:
            ts = datetime.combine(DAY, at, tzinfo=config.app.tzinfo)
            writer.writerow([ts.isoformat(), waiting, served])
    result = update_entity_reports(entity, QUEUE_LOG, config.app.tzinfo)
    assert result.recomputed_dates == [DAY]

    table = metrics_router.metric_table(registry)
    router = APIRouter(prefix="/test-metrics")
    metrics_router.add_table_routes(router, table)
    app = create_app(x86_config)
    app.include_router(router)
    with TestClient(app) as client:
        client.app.state.context.users.add("viewer1", PASSWORD, "viewer")  # type: ignore[attr-defined]
        r = client.post("/auth/token", data={"username": "viewer1", "password": PASSWORD})
        assert r.status_code == 200, r.text
        yield client, {"Authorization": f"Bearer {r.json()['access_token']}"}


def get(api: tuple[TestClient, dict[str, str]], url: str, **params: str) -> Any:
    client, headers = api
    r = client.get(url, params=params, headers=headers)
    assert r.status_code == 200, (url, r.text)
    return r.json()


def test_one_declaration_makes_the_routes_the_listing_and_the_files(queue_api) -> None:
    kinds = get(queue_api, "/test-metrics/kinds")
    # the camera metrics, then the same summed over the cameras of each area (derived too)
    assert [(k["entity_type"], k["kind"]) for k in kinds] == [
        ("camera", "queue"), ("camera", "line-crossings"),
        ("area", "queue"), ("area", "line-crossings")]
    queue = kinds[0]
    assert queue["path"] == "/test-metrics/cameras/queue"
    assert queue["periods"] == list(PERIODS)
    assert queue["description"] == QUEUE.description
    assert queue["columns"]["daily"] == [
        "Date", "Samples", "AvgWaiting", "MaxWaiting", "AvgServed", "MaxServed",
        "QueueSamples", "SumWaiting", "SumServed"]
    assert queue["columns"] == {p: QUEUE.columns(p) for p in PERIODS}

    daily = get(queue_api, "/test-metrics/cameras/queue/daily", cameras="pets-view1",
                from_date=DAY.isoformat(), to_date=DAY.isoformat())
    assert daily["kind"] == "queue" and daily["columns"] == QUEUE.columns("daily")
    assert daily["entities"][0]["rows"] == [{
        "Date": DAY.isoformat(), "Samples": 3, "AvgWaiting": 2.667, "MaxWaiting": 5,
        "AvgServed": 1.0, "MaxServed": 2, "QueueSamples": 2, "SumWaiting": 8, "SumServed": 3}]
    hourly = get(queue_api, "/test-metrics/cameras/queue/hourly", cameras="pets-view1",
                 date=DAY.isoformat())
    rows = hourly["entities"][0]["rows"]
    assert [(r["Hour"], r["Samples"], r["SumServed"]) for r in rows] == [
        (f"{DAY.isoformat()}T09:00:00+00:00", 2, 3), (f"{DAY.isoformat()}T10:00:00+00:00", 1, 0)]
    assert hourly["entities"][0]["totals"]["SumWaiting"] == 8
    weekly = get(queue_api, "/test-metrics/cameras/queue/weekly", cameras="pets-view1",
                 from_date=DAY.isoformat(), to_date=DAY.isoformat())
    monday = DAY - timedelta(days=DAY.weekday())
    assert [r["Week"] for r in weekly["entities"][0]["rows"]] == [monday.isoformat()]
    live = get(queue_api, "/test-metrics/cameras/queue/live", cameras="pets-view1")
    assert live["entities"][0]["rows"][0]["SumWaiting"] == 5  # the newest 10 minutes

    # the process-wide table does not know the test kind
    listed = {(k["entity_type"], k["kind"]) for k in get(queue_api, "/metrics/kinds")}
    assert ("camera", "queue") not in listed and ("camera", "social-distancing") in listed
    client, headers = queue_api
    assert client.get("/metrics/cameras/queue/daily", headers=headers).status_code == 404


def test_the_metrics_table_is_the_registry() -> None:
    registered = {(e, k.name): k for e in ("camera", "area") for k in report_kinds(e)}
    table = [m for m in metrics_router.METRICS if isinstance(m, metrics_router.ReportMetric)]
    assert {(m.entity.name, m.name): m.report for m in table}.keys() == registered.keys()
    assert len(table) == len(registered)  # each kind once per entity type
    for m in table:
        assert m.report is registered[(m.entity.name, m.name)]  # the declaration itself
        assert m.description == describe(m.report) != ""
        assert all(m.columns(p) == m.report.columns(p) for p in PERIODS)
    # a ReportMetric keeps no copy of a name, description or columns
    assert {f.name for f in dataclasses.fields(metrics_router.ReportMetric)} == {
        "entity", "report", "periods"}
    # the routes: four per report kind, made from the table
    paths = {getattr(r, "path", "") for r in metrics_router.router.routes}
    for metric in metrics_router.METRICS:
        for period in metric.periods:
            assert f"/metrics/{metric.entity.plural}/{metric.name}/{period}" in paths
    kind_paths = {p for p in paths if p.count("/") == 4 and "{" not in p}
    assert len(kind_paths) == sum(len(m.periods) for m in metrics_router.METRICS)
    assert metrics_router.kinds_listing(metrics_router.METRICS)[0]["kind"] == "social-distancing"
    # period key columns are declared once too
    assert metrics_router.KEY_COLUMNS is KEY_COLUMNS
    assert audience_router.KEY_COLUMNS is KEY_COLUMNS


def _constants(module: ModuleType) -> set[str]:
    """Every string constant in the code of ``module`` (functions and classes included)."""
    found: set[str] = set()
    seen: set[int] = set()

    def walk(code: Any) -> None:
        if id(code) in seen:
            return
        seen.add(id(code))
        for const in code.co_consts:
            if isinstance(const, str):
                found.add(const)
            elif hasattr(const, "co_consts"):
                walk(const)

    import importlib.util

    spec = importlib.util.find_spec(module.__name__)
    assert spec is not None and spec.origin is not None
    source = Path(spec.origin).read_text()
    walk(compile(source, spec.origin, "exec"))
    return found


def _containers(value: Any, depth: int = 0) -> Iterator[Any]:
    yield value
    if depth < 3 and isinstance(value, (tuple, list, set, frozenset, dict)):
        items = value.items() if isinstance(value, dict) else value
        for item in items:
            yield from _containers(item, depth + 1)


def test_no_kind_name_columns_or_description_is_declared_twice() -> None:
    kinds = [k for e in ("camera", "area") for k in report_kinds(e)]
    names = {k.name for k in kinds}
    columns = {tuple(k.columns(p)) for k in kinds for p in PERIODS}
    columns |= {tuple(m.name for m in k.measures) for k in kinds}
    columns |= {tuple(m.column for m in k.measures) for k in kinds if len(k.measures) > 1}
    texts = {describe(k) for k in kinds}
    # The API modules hold no literal kind name, no copy of a column list or a description
    # (metrics' heatmaps use "presence" for another thing: its code is checked below).
    for module in (audience_router, export_router):
        constants = _constants(module)
        assert not constants & names, module.__name__
        assert not constants & texts, module.__name__
    assert not _constants(metrics_router) & texts
    assert not (_constants(metrics_router) & names) - {"presence"}
    # Nor a global (a table, a column list) that repeats a declaration; what they import
    # from the declaring modules is the declaration itself, not a copy.
    imported = {id(v) for m in list(sys.modules.values()) if m.__name__.startswith("libs.")
                and m is not reports for v in vars(m).values()}
    for module in (audience_router, export_router, metrics_router, reports):
        for name, value in vars(module).items():
            if name in ("METRICS", "REPORTS") or \
                    isinstance(value, (ModuleType, type)) or id(value) in imported:
                continue
            for item in _containers(value):
                if isinstance(item, (tuple, list)) and item and \
                        all(isinstance(x, str) for x in item):
                    assert tuple(item) not in columns, (module.__name__, name)
                if isinstance(item, (tuple, list)) and value is not item:
                    assert not any(isinstance(x, ReportKind) for x in item), (
                        module.__name__, name)


def test_every_kind_describes_itself() -> None:
    kinds = {k.name: k for e in ("camera", "area") for k in report_kinds(e)}
    assert kinds == {k.name: k for e in ("camera", "area") for k in REPORTS.kinds(e)}
    assert all(k.description and describe(k) == k.description for k in kinds.values())


def test_a_kind_name_cannot_be_registered_twice() -> None:
    registry = ReportRegistry()
    registry.register("camera", QUEUE_LOG)
    registry.register("camera", QUEUE_LOG)  # the same spec again (a module re-imported)
    with pytest.raises(ValueError, match="queue"):
        registry.register("camera", RawLogSpec("other_log", (QUEUE,)))
    registry.register("area", RawLogSpec("other_log", (QUEUE,)))  # areas have their own
    assert [k.name for k in registry.kinds("camera")] == ["queue"]
    assert KEY_COLUMNS["daily"] == ("Date",)
