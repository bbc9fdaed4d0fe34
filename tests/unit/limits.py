"""Protocol limits for unit tests: the settings' defaults (config.py), some replaced."""

from __future__ import annotations

from typing import Any

import msgspec

from fastchat.config import Settings
from fastchat.protocol import Limits


def limits_with(**changes: Any) -> Limits:
    return msgspec.structs.replace(Settings().limits, **changes)
