"""Rate limits on failed authentication (per client address) and on uploads (per team), with the `limits`
library: a sliding window (two counters per key) kept in the broker's Redis, so every API process counts together, or in memory
for the single-process demo."""

from __future__ import annotations

import math
import time

from limits import parse, storage, strategies

from app.errors import ApiError
from app.settings import Settings


class RateLimits:
    def __init__(self, settings: Settings):
        options = {"key_prefix": f"{settings.broker_key_prefix}delbench-limits"}
        uri = settings.rate_limit_storage_uri
        self.storage = storage.storage_from_string(uri, **(options if uri.startswith("redis") else {}))
        self.limiter = strategies.SlidingWindowCounterRateLimiter(self.storage)
        self.failed_auth = parse(settings.rate_limit_failed_auth)
        self.uploads = parse(settings.rate_limit_uploads)

    def refuse_if_spent(self, item, *keys: str, what: str) -> None:
        """429 with Retry-After when the window for `keys` has no room left (nothing is counted here)."""
        if self.limiter.test(item, *keys):
            return
        reset = self.limiter.get_window_stats(item, *keys).reset_time
        wait = max(1, math.ceil(reset - time.time()))
        raise ApiError(
            429,
            "rate_limited",
            f"too many {what}: at most {item}; retry in {wait} s",
            headers={"Retry-After": str(wait)},
        )

    def count(self, item, *keys: str) -> None:
        self.limiter.hit(item, *keys)

    def failed_auth_guard(self, client: str) -> None:
        self.refuse_if_spent(
            self.failed_auth, "auth", client, what="failed authentications from your address"
        )

    def failed_auth_seen(self, client: str) -> None:
        self.count(self.failed_auth, "auth", client)

    def upload(self, team_id: int) -> None:
        """Count one upload of the team, refusing it when the team's window is spent."""
        if not self.limiter.hit(self.uploads, "upload", str(team_id)):
            self.refuse_if_spent(self.uploads, "upload", str(team_id), what="uploads from your team")
