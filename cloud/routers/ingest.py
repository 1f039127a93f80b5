from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header
from fastapi.concurrency import run_in_threadpool

from cloud.deps import BatchBodyDep, BatchGatewayDep, DbDep, GapBodyDep, NowDep
from cloud.openapi import errors
from cloud.schemas import GapRecorded, IngestResult
from cloud.services import gaps as gap_service
from cloud.services import ingest as service
from protocol.batch import (
    CONTENT_TYPE,
    GAP_CONTENT_TYPE,
    GAP_PATH,
    HEADER_SIGNATURE,
    INGEST_PATH,
)

router = APIRouter(tags=["ingest"])


# The bodies are read raw (never parsed into models); these only document them in OpenAPI.
def _raw(content_type: str, description: str) -> dict[str, object]:
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {content_type: {"schema": {"type": "string", "format": "binary"}}},
        }
    }


@router.post(
    INGEST_PATH, response_model=IngestResult, responses=errors(400, 409),
    openapi_extra=_raw(CONTENT_TYPE, "zlib(canonical batch JSON), see protocol.batch"),
)
async def ingest(
    gateway: BatchGatewayDep,
    body: BatchBodyDep,
    store: DbDep,
    now_ms: NowDep,
    signature: Annotated[str | None, Header(alias=HEADER_SIGNATURE)] = None,
) -> IngestResult:
    """Store one signed batch (protocol.batch: zlib body, signature header, hash chain).

    200 when the batch is accepted, with counts: each record and state is checked on its own,
    and one that is invalid, not the device's own (no record key registered for a tagged item,
    a bad tag, an untagged item of a device that has a key), a conflict (its identity stored
    before with other content) or whose device is assigned to another gateway is quarantined
    (not stored) while the rest is stored; also 200 when a batch already stored is sent again
    (nothing stored twice). 400 bad signature or a malformed batch (its own fields or shape);
    409 out of chain; nothing is stored unless 200.
    """
    # The batch's checks take milliseconds of CPU: in a worker thread, so the event loop goes
    # on reading other requests. The answer's model is then checked on the loop, with no
    # second hop (a plain def endpoint would make one for it).
    result = await run_in_threadpool(service.ingest, store, gateway, body, signature, now_ms)
    return IngestResult(
        stored=result.stored, duplicates=result.duplicates, quarantined=result.quarantined,
        seq=result.seq,
    )


@router.post(
    GAP_PATH, response_model=GapRecorded, responses=errors(400, 409),
    openapi_extra=_raw(GAP_CONTENT_TYPE, "canonical gap JSON, see protocol.batch.Gap"),
)
def gap(
    gateway: BatchGatewayDep,
    body: GapBodyDep,
    store: DbDep,
    now_ms: NowDep,
    signature: Annotated[str | None, Header(alias=HEADER_SIGNATURE)] = None,
) -> GapRecorded:
    """Record a signed gap: the batch at this place of the chain was refused and dead-lettered.

    The gap takes the refused batch's place (seq = head + 1, prev = head digest) and moves the
    head to the refused batch's digest, so the next batch chains normally. 200 when recorded,
    and when the same gap is sent again; 400 bad signature or malformed; 409 out of chain.
    """
    result = gap_service.record_gap(store, gateway, body, signature, now_ms)
    return GapRecorded(seq=result.seq, replay=result.replay)
