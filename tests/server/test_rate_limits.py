"""Failed authentication is rate-limited per client address and uploads per team, in the broker's Redis
(production) or in memory (the embedded demo)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from app.main import create_app
from tests.server.conftest import add_team, seed_phase


def _client(stack, **limits):
    settings = stack.settings.model_copy(update=limits)
    if stack.name == "production":  # a fresh key space, so no earlier test's counts leak in
        settings = settings.model_copy(
            update={"broker_key_prefix": f"{settings.broker_key_prefix}rl-{id(settings)}:"}
        )
    return TestClient(create_app(settings))


def test_bad_tokens_and_logins_are_limited_per_address(stack, pool_dir):
    seeded = seed_phase(stack, pool_dir)
    with _client(stack, rate_limit_failed_auth="5/minute") as client:
        codes = [client.get("/api/v1/submissions", headers={"Authorization": f"Bearer dlb_guess{i}"}).status_code
                 for i in range(8)]  # fmt: skip
        assert codes == [401] * 5 + [429] * 3
        refused = client.get("/api/v1/submissions", headers={"Authorization": "Bearer dlb_guess"})
        assert refused.json()["error"]["rule"] == "rate_limited" and int(refused.headers["retry-after"]) >= 1
        # the window is spent for this address: even a good token waits (no oracle for guessing)
        assert (
            client.get("/api/v1/submissions", headers={"Authorization": f"Bearer {seeded.token}"}).status_code
            == 429
        )
        login = client.post("/login", data={"token": "dlb_wrong"})
        assert "too many failed authentications" in login.text  # the sign-in form says why


def test_uploads_are_limited_per_team(stack, pool_dir, pool_ids):
    seeded = seed_phase(stack, pool_dir)
    other = add_team(stack, "team-b")
    with _client(stack, rate_limit_uploads="3/minute") as client:

        def up(token, i):
            return client.post(
                "/api/v1/phases/dev/submissions",
                headers={"Authorization": f"Bearer {token}"},
                files={"file": ("s.txt", pool_ids[i].encode(), "text/plain")},
            )

        codes = [up(seeded.token, i).status_code for i in range(5)]
        assert codes == [202] * 3 + [429] * 2
        assert up(other, 10).status_code == 202  # another team's window is its own


def test_settings_choose_redis_or_memory(stack):
    uri = stack.settings.rate_limit_storage_uri
    assert uri.startswith("redis://") if stack.name == "production" else uri == "memory://"
