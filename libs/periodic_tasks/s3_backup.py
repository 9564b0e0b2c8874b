"""``s3_backup``: where the periodic task registry finds the S3 backup.

The task lives with the S3 sink (:mod:`libs.integrations.s3_backup`); importing it registers
it.
"""

from libs.integrations import s3_backup  # noqa: F401
