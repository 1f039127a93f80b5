"""What a request reads from the app: its settings, a store, the config signer and the clock,
as FastAPI dependencies. FastAPI solves each once per request, so the caller's authentication
(cloud.access) and the endpoint share one store."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request

from cloud.services.config import ConfigSigner
from cloud.settings import Settings
from cloud.store import Store


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_store(request: Request) -> Iterator[Store]:
    with request.app.state.db.connection() as store:
        yield store


def get_signer(request: Request) -> ConfigSigner:
    signer: ConfigSigner = request.app.state.signer
    return signer


def get_now_ms(request: Request) -> int:
    seconds: float = request.app.state.clock()
    return round(seconds * 1000)


SettingsDep = Annotated[Settings, Depends(get_settings)]
DbDep = Annotated[Store, Depends(get_store)]
SignerDep = Annotated[ConfigSigner, Depends(get_signer)]
NowDep = Annotated[int, Depends(get_now_ms)]
