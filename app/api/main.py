"""All routers under /api/v1 (health sits at the root)."""

from fastapi import APIRouter

from app.api.routes import admin, phases, submissions

api_router = APIRouter(prefix="/api/v1")
api_router.include_router(phases.router)
api_router.include_router(submissions.router)
api_router.include_router(admin.router)
