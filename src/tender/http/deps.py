"""Request dependencies of every HTTP route, the API's and the hosted pages': the container and the hub.

All `async def`: FastAPI runs a plain `def` dependency in its thread pool, a hop to a worker thread and back
on every request (about a third of the API's CPU under load, issue 16) for what is an attribute read."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from tender.bootstrap import Container
from tender.services.live import PaymentStatusHub


async def get_container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


ContainerDep = Annotated[Container, Depends(get_container)]


async def get_hub(request: Request) -> PaymentStatusHub:
    hub: PaymentStatusHub = request.app.state.hub
    return hub


HubDep = Annotated[PaymentStatusHub, Depends(get_hub)]
