"""Telling an object store's credential error from a transient one, by its message.

delta-rs and pyarrow raise a plain OSError for both; a refused or missing credential will be
refused again, so it must fail at once instead of going through a retry policy's backoff.
"""

from __future__ import annotations

import re

CREDENTIAL_CODES = (
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
)
"""The S3 error codes that say the credentials are wrong, expired or not allowed."""
MISSING_CREDENTIALS = re.compile(r"IMDS|credential provider|no credentials", re.IGNORECASE)
"""object_store's words when it found no credentials and the metadata service did not answer."""


def refused_credentials(message: str) -> str | None:
    """What went wrong in a few words (an S3 error code, or 'no credentials'), or None when
    the message is about something else."""
    for code in CREDENTIAL_CODES:
        if f"<Code>{code}</Code>" in message or f"code: {code}" in message:
            return code
    if "403 Forbidden" in message or "lacked the necessary privileges" in message:
        return "403 Forbidden"
    if MISSING_CREDENTIALS.search(message):
        return "no credentials"
    return None


def credentials_sentence(reason: str) -> str:
    """The one sentence a step fails with."""
    return (
        f"S3 refused the lake's credentials ({reason}): check AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY, AWS_PROFILE or the instance role, and the bucket's policy; "
        "this step is not retried, since the same credentials would be refused again"
    )
