"""``web_hook_logger``: where the logger registries find the webhook sink.

The sink lives with the other network sinks (:mod:`libs.integrations.webhook`); importing it
registers it as a camera sink, an area sink and a processor-wide output.
"""

from libs.integrations import webhook  # noqa: F401
