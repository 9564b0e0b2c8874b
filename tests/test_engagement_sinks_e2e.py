"""The real processor on a real clip (TUD-Campus, 71 frames) with the ``engagement`` and
``heatmap`` stages, ``redis_logger`` and ``influxdb_logger`` built by the supervisor from the
configuration, against a real ``redis-server`` and ``influxd``: every ``engagement_update``
and ``clusters`` record the event bus carried is written to Redis (counted on the stream,
with the last update's person keys), and InfluxDB holds one point per record for each
measurement (counted with InfluxQL)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from libs.records import (
    AreaOccupancySample,
    Clusters,
    EngagementUpdate,
    LineCrossing,
    ObjectsSample,
)
from tests.servers import InfluxDB1, Redis, running
from tests.test_event_bus import Collector, camera, supervisor_with, tud_only
from tests.test_influxdb_sink import query
from tests.test_supervisor import wait_until

STAGES = """
[SourcePostProcessor_20]
Name = engagement
UpdatePeriod = 0.5
WindowSeconds = 2

[SourcePostProcessor_21]
Name = heatmap
WindowSeconds = 60
Eps = 40
MinSamples = 2
UpdatePeriod = 1
"""


@pytest.mark.slow
def test_engagement_records_of_a_real_run_reach_redis_and_influxdb(
        x86_config: Path, tmp_path: Path) -> None:
    config = tud_only(x86_config)
    with running(Redis(tmp_path / "redis")) as rsrv, \
            running(InfluxDB1(tmp_path / "influx")) as isrv:
        assert isinstance(rsrv, Redis) and isinstance(isrv, InfluxDB1)
        # the processor tag of every point: [App] ProcessorName, the box's one name
        text = config.read_text().replace("[App]\n", "[App]\nProcessorName = box1\n", 1)
        config.write_text(text + STAGES + f"""
[Output_20]
Name = redis_logger
Url = {rsrv.url}
MessageExpiration = 600
Stream = updates

[Output_21]
Name = influxdb_logger
Url = {isrv.url}
Database = e2e
SendingInterval = 0.2
""")
        got = Collector()
        with supervisor_with(config, got) as sup:
            wait_until(lambda: camera(sup, "tud")["status"] == "finished", 120, "TUD")

            def drained() -> bool:
                out = sup.submit(sup.outputs_status).result(10)
                return all(out[s]["queued"] == 0 and out[s]["connected"]
                           for s in ("Output_20", "Output_21"))

            wait_until(drained, 30, "both sinks to deliver")
        updates = [r for r in got.of(EngagementUpdate, "tud")
                   if isinstance(r, EngagementUpdate)]
        clusters = got.of(Clusters, "tud")
        objects = got.of(ObjectsSample, "tud")
        crossings = got.of(LineCrossing, "tud")
        assert len(updates) >= 5 and clusters and objects
        assert any(u.people for u in updates)

        client = redis.Redis.from_url(rsrv.url, decode_responses=True)
        written = [e[1]["id"] for e in client.xrange("updates")]
        assert sorted(set(written)) == sorted(r.id for r in [*updates, *clusters])
        last = updates[-1]
        for person in last.people:
            value = json.loads(client.get(f"tud-{person.track_id}:engagement") or "null")
            assert value == {"engaged": int(person.engaged),
                             "engagement": round(person.engagement_seconds, 3),
                             "last-seen": person.last_seen.isoformat(timespec="milliseconds")}
        assert json.loads(client.get("heatmap:tud") or "null")["heatmap"] == [
            {"position": {"x": round(c.position[0]), "y": round(c.position[1])},
             "intensity": round(c.intensity, 3), "radius": round(c.radius)}
            for c in clusters[-1].clusters]  # type: ignore[attr-defined]
        client.close()

        def count(q: str) -> int:
            rows = query(isrv, "e2e", q)
            return int(rows[0]["count"]) if rows else 0

        assert count("SELECT COUNT(total_seconds) FROM engagement_metrics WHERE processor = "
                     "'box1'") == len(updates)
        assert count("SELECT COUNT(engaged_people) FROM real_time WHERE type = 'window'") == \
            len(updates)
        assert count("SELECT COUNT(person_id) FROM real_time") == \
            sum(len(u.person_ids) for u in updates)
        assert count("SELECT COUNT(occupancy) FROM occupancy WHERE camera = 'tud'") == \
            len(objects)
        areas = got.of(AreaOccupancySample, "sidewalk")
        assert areas and count("SELECT COUNT(occupancy) FROM occupancy WHERE area = "
                               "'sidewalk'") == len(areas)
        assert count("SELECT COUNT(violations) FROM distancing") == len(objects)
        assert count("SELECT COUNT(crossings) FROM traffic") == len(crossings)
        print(f"{len(updates)} updates, {len(clusters)} clusters, {len(objects)} samples, "
              f"{len(crossings)} crossings written")
