"""The dashboard's rollout pages (cloud.rollout_pages), for ops and technicians; reading
them moves the rollouts on, as the API does."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path
from fastapi.responses import HTMLResponse

from cloud import render, rollout_pages
from cloud.access import Role
from cloud.deps import DbDep, NowDep
from cloud.routers.dashboard import dashboard_of
from cloud.services import rollouts

router = APIRouter(tags=["dashboard"])
RolloutViewer = Annotated[render.Viewer | None,
                          Depends(dashboard_of(Role.OPS, Role.TECHNICIAN))]


@router.get("/rollouts", response_class=HTMLResponse)
def rollouts_page(viewer: RolloutViewer, store: DbDep, now_ms: NowDep) -> HTMLResponse:
    """Every rollout: its bundle, state (and why), current wave and devices by word."""
    return HTMLResponse(rollout_pages.rollouts_page(rollouts.views(store, now_ms), viewer),
                        headers=render.SECURITY_HEADERS)


@router.get("/rollouts/{rollout_id}", response_class=HTMLResponse)
def rollout_page(
    rollout_id: Annotated[str, Path(pattern=rollouts.ID_PATTERN)], viewer: RolloutViewer,
    store: DbDep, now_ms: NowDep,
) -> HTMLResponse:
    """A rollout's page: its state and settings, a stacked bar per wave (devices by update
    word), its waves, its devices (word, progress, reason, firmware) and the devices it left
    out. 404 unknown."""
    view = rollouts.view(store, rollout_id, now_ms)
    return HTMLResponse(rollout_pages.rollout_page(view, viewer), headers=render.SECURITY_HEADERS)
