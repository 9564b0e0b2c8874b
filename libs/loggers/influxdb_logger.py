"""``influxdb_logger``: where the logger registries find the InfluxDB sink.

The sink lives with the other network sinks (:mod:`libs.integrations.influxdb`); importing it
registers it as a camera sink, an area sink and a processor-wide output.
"""

from libs.integrations import influxdb  # noqa: F401
