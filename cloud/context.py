"""What a request reads from the app: its settings, a store, the config signer and the clock,
as FastAPI dependencies. FastAPI solves each once per request, so the caller's authentication
(cloud.access) and the endpoint share one store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import contextmanager_in_threadpool

from cloud.db import Database
from cloud.services.config import ConfigSigner
from cloud.settings import Settings
from cloud.store import Store


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def reads_inline(request: Request) -> bool:
    """Whether the app's store answers reads without waiting, so they may run on the event
    loop: SQLite (a connection lent at once, reads of microseconds that a writer never
    blocks, in WAL mode). PostgreSQL's pool and queries wait on the network: worker thread.
    Writes are never inline: one may wait for the writer, which must not hold up the loop."""
    return isinstance(request.app.state.db, Database)


async def get_store(request: Request) -> AsyncIterator[Store]:
    """SQLite lends a connection without waiting (an idle one, or a new one), so it is lent on
    the event loop: two thread hops fewer per request. PostgreSQL's pool may wait for a free
    connection, which must not hold up the loop: it is lent in a worker thread."""
    database = request.app.state.db
    if reads_inline(request):
        with database.connection() as store:
            yield store
    else:
        async with contextmanager_in_threadpool(database.connection()) as store:
            yield store


async def get_signer(request: Request) -> ConfigSigner:
    signer: ConfigSigner = request.app.state.signer
    return signer


async def get_now_ms(request: Request) -> int:
    seconds: float = request.app.state.clock()
    return round(seconds * 1000)


SettingsDep = Annotated[Settings, Depends(get_settings)]
DbDep = Annotated[Store, Depends(get_store)]
SignerDep = Annotated[ConfigSigner, Depends(get_signer)]
NowDep = Annotated[int, Depends(get_now_ms)]
