"""The organizers' API under /api/v1/admin: every route requires an admin token (checked once, on the
router), and every mutating route takes a `reason` that is written to the audit log with who acted."""

from fastapi import APIRouter, Depends

from app.api.deps import require_admin
from app.api.routes.admin import ops, phases, submissions, teams
from app.schemas import ErrorBody

router = APIRouter(
    prefix="/admin",
    tags=["admin"],
    dependencies=[Depends(require_admin)],
    responses={code: {"model": ErrorBody} for code in (401, 403, 404, 409, 422)},
)
for module in (phases, submissions, teams, ops):
    router.include_router(module.router)
