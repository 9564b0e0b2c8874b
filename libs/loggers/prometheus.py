"""``prometheus``: where the output registry finds the Prometheus exposition.

The sink lives with the other integrations (:mod:`libs.integrations.prometheus`); importing
it registers it as an ``[Output_N]`` sink.
"""

from libs.integrations import prometheus  # noqa: F401
