"""``GET /config/keys``: what every key means, from the config models' own descriptions (the
dashboard's Settings page shows them as hints), and which parts have a "send a test"; and
``POST /periodic_tasks/{name}/test`` for a task without a test."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from libs.config.models import AppConfig
from libs.integrations.mqtt import MqttConfig
from tests.conftest import TEST_PASSWORD, app_with_users


def test_keys_come_from_the_models_and_say_which_parts_can_be_tested(x86_config: Path) -> None:
    client = TestClient(app_with_users(x86_config))
    r = client.post("/auth/token", data={"username": "viewer1", "password": TEST_PASSWORD})
    viewer = {"Authorization": f"Bearer {r.json()['access_token']}"}
    assert client.get("/config/keys").status_code == 401
    got = client.get("/config/keys", headers=viewer)
    assert got.status_code == 200, got.text
    body = got.json()
    app_keys = body["sections"]["App"]
    assert app_keys["SlackChannel"] == AppConfig.model_fields["slack_channel"].description
    assert {"EnableSlackNotifications", "OccupancyAlertsMinInterval", "GlobalReportingEmails",
            "GlobalReportTime", "DailyGlobalReport", "WeeklyGlobalReport"} <= set(app_keys)
    mqtt = body["parts"]["source_loggers"]["mqtt_logger"]
    assert mqtt["testable"] is True
    assert mqtt["keys"]["Host"] == MqttConfig.model_fields["host"].description
    tested = {kind: sorted(n for n, p in parts.items() if p["testable"])
              for kind, parts in body["parts"].items()}
    assert tested["source_loggers"] == ["influxdb_logger", "mqtt_logger", "postgres_logger",
                                        "redis_logger", "s3_logger", "web_hook_logger"]
    assert tested["outputs"] == ["influxdb_logger", "mqtt_logger", "postgres_logger",
                                 "prometheus", "redis_logger", "web_hook_logger"]
    assert tested["periodic_tasks"] == ["s3_backup"]
    assert not body["parts"]["source_loggers"]["video_logger"]["testable"]

    r = client.post("/auth/token", data={"username": "admin1", "password": TEST_PASSWORD})
    admin = {"Authorization": f"Bearer {r.json()['access_token']}"}
    r = client.post("/periodic_tasks/PeriodicTask_0/test", headers=admin)
    assert r.status_code == 400 and "has no test" in r.json()["detail"], r.text
