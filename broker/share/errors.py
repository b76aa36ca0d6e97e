"""Kafka's error codes of share groups (org.apache.kafka.common.protocol.Errors,
Kafka 4.4) that ``broker/errors.py`` does not list yet; kept here so that this
package can be added without touching shared modules. They move into
``ErrorCode`` when the share APIs are wired up."""
from enum import IntEnum


class ShareErrorCode(IntEnum):
    INVALID_RECORD_STATE = 121        # an acknowledgement names a record not acquired by this member
    SHARE_SESSION_NOT_FOUND = 122
    INVALID_SHARE_SESSION_EPOCH = 123
    FENCED_STATE_EPOCH = 124          # a write carries an older state epoch (offsets were reset)
    SHARE_SESSION_LIMIT_REACHED = 133
