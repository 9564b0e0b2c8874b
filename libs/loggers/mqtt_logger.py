"""``mqtt_logger``: where the logger registries find the MQTT sink.

The sink lives with the other network sinks (:mod:`libs.integrations.mqtt`); importing it
registers it as a camera sink, an area sink and a processor-wide output.
"""

from libs.integrations import mqtt  # noqa: F401
