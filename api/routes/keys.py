"""/v1/keys: API keys (admin scope). The token of a new key is in the 201 answer and nowhere else."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from api.auth import admin_scope
from api.deps import stores
from api.errors import COMMON, documented
from registry.schemas import KeyCreated, KeyInfo, KeyRequest
from registry.services import keys
from registry.stores import FarmStores

router = APIRouter(prefix="/v1/keys", tags=["keys"], dependencies=[Depends(admin_scope)],
                   responses={**COMMON, **documented(409)})


@router.post("", response_model=KeyCreated, status_code=201)
def create_key(request: KeyRequest, farm: FarmStores = Depends(stores)) -> KeyCreated:
    return keys.create_key(farm.db, request.name, request.scopes)


@router.get("", response_model=list[KeyInfo])
def list_keys(farm: FarmStores = Depends(stores)) -> list[KeyInfo]:
    return keys.list_keys(farm.db)


@router.delete("/{name}", response_model=KeyInfo)
def revoke_key(name: str, farm: FarmStores = Depends(stores)) -> KeyInfo:
    return keys.revoke_key(farm.db, name)
