"""``postgres_logger``: where the logger registries find the fleet-database sink.

The sink lives with the other network sinks (:mod:`libs.integrations.postgres`); importing
it registers it as a camera sink, an area sink and a processor-wide output.
"""

from libs.integrations import postgres  # noqa: F401
