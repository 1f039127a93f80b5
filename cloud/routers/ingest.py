from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header

from cloud.deps import BatchBodyDep, BatchGatewayDep, DbDep, NowDep
from cloud.schemas import IngestResult
from cloud.services import ingest as service
from protocol.batch import CONTENT_TYPE, HEADER_SIGNATURE, INGEST_PATH

router = APIRouter(tags=["ingest"])


# The body is read raw (never parsed into models); this only documents it in OpenAPI.
_BODY = {
    "requestBody": {
        "required": True,
        "description": "zlib(canonical batch JSON), see protocol.batch",
        "content": {CONTENT_TYPE: {"schema": {"type": "string", "format": "binary"}}},
    }
}


@router.post(INGEST_PATH, response_model=IngestResult, openapi_extra=_BODY)
def ingest(
    gateway: BatchGatewayDep,
    body: BatchBodyDep,
    store: DbDep,
    now_ms: NowDep,
    signature: Annotated[str | None, Header(alias=HEADER_SIGNATURE)] = None,
) -> IngestResult:
    """Store one signed batch (protocol.batch: zlib body, signature header, hash chain).

    200 when stored and when a batch already stored is sent again (nothing stored twice);
    400 bad signature or malformed; 409 out of chain; nothing is stored unless 200.
    """
    result = service.ingest(store, gateway, body, signature, now_ms)
    return IngestResult(stored=result.stored, duplicates=result.duplicates, seq=result.seq)
