"""``s3_logger``: where the logger registry finds the S3 screenshot sink.

The sink lives with the other network sinks (:mod:`libs.integrations.s3`); importing it
registers it as a camera sink.
"""

from libs.integrations import s3  # noqa: F401
