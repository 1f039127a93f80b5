from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response, status

from cloud.access import Principal, Role, requires
from cloud.deps import DbDep, NowDep
from cloud.fleet_schemas import CustomerCreate, CustomerPublic
from cloud.openapi import errors
from cloud.services import registry
from cloud.store import CustomerRow, Store

router = APIRouter(prefix="/api/v1/customers", tags=["customers"])
READ = [Depends(requires(Role.OPS, Role.TECHNICIAN, Role.ANALYST))]


def public(store: Store, row: CustomerRow) -> CustomerPublic:
    return CustomerPublic(id=row.id, name=row.name, created_ms=row.created_ms,
                          cancelled_ms=row.cancelled_ms,
                          devices=[r.device for r in store.registries(row.id)])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=CustomerPublic,
             responses={200: {"model": CustomerPublic, "description": "already there: unchanged"},
                        **errors(409)},
             openapi_extra={"x-audit-action": "customer.create"})
def create_customer(
    body: CustomerCreate, store: DbDep, now_ms: NowDep, response: Response,
    caller: Annotated[Principal, Depends(requires(Role.OPS))],
) -> CustomerPublic:
    """Create a customer account. 201 when new; 200 when it exists with this name; 409 when
    it exists with another name."""
    row, created = registry.create_customer(store, caller, body.id, body.name, now_ms)
    if not created:
        response.status_code = status.HTTP_200_OK
    return public(store, row)


@router.get("", response_model=list[CustomerPublic], dependencies=READ)
def list_customers(store: DbDep) -> list[CustomerPublic]:
    """Every customer with its products."""
    return [public(store, row) for row in store.list_customers()]


@router.get("/{customer_id}", response_model=CustomerPublic, dependencies=READ)
def get_customer(customer_id: str, store: DbDep) -> CustomerPublic:
    """One customer with its products; 404 unknown."""
    return public(store, registry.get_customer(store, customer_id))
