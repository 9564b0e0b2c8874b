"""``redis_logger``: where the logger registries find the Redis sink.

The sink lives with the other network sinks (:mod:`libs.integrations.redis_sink`); importing
it registers it as a camera sink (``[SourceLogger_N]``) and a processor-wide output
(``[Output_N]``).
"""

from libs.integrations import redis_sink  # noqa: F401
