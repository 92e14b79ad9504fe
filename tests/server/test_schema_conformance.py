"""schemathesis over the API's own OpenAPI schema, with a participant's token and an admin's: no 5xx, and
every answer conforms to what the schema documents (status code, content type, headers, body). Bounded to a
few generated requests per operation so that it stays a unit-test's cost."""

from __future__ import annotations

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import checks

from app.main import create_app
from tests.board.conftest import add_admin
from tests.server.conftest import add_team, seed_phase

EXAMPLES = 6  # per operation and role
CONFORMANCE = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
]


@pytest.mark.slow
def test_the_api_answers_as_its_schema_says(stack, pool_dir):
    seeded = seed_phase(stack, pool_dir)
    tokens = {"participant": add_team(stack, "schema-probe"), "admin": add_admin(stack), "team": seeded.token}
    app = create_app(stack.settings)
    with TestClient(app):  # runs the lifespan (pool warm-up), as a server would
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        failures: dict[tuple[str, str], str] = {}
        for role in ("participant", "admin"):
            for result in schema.get_all_operations():
                _probe(result.ok(), {"Authorization": f"Bearer {tokens[role]}"}, role, failures)
    assert not failures, "\n\n".join(f"{role} {label}:\n{why}" for (role, label), why in failures.items())


def _probe(operation, headers: dict, role: str, failures: dict) -> None:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def probe(case):
        try:
            case.call_and_validate(headers=headers, checks=CONFORMANCE)
        except Exception as exc:  # collected, so that one run lists every operation that fails
            failures.setdefault((role, operation.label), str(exc)[:600])

    probe()
