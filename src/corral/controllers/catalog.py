"""The controllers ``corral up`` / ``corral server`` run, in one place so adding one is one line here."""

from __future__ import annotations

from corral.client.base import Transport
from corral.controllers.runtime import Controller
from corral.util.clock import Clock


def all_controllers(transport: Transport, clock: Clock) -> list[Controller]:
    controllers: list[Controller] = []
    return controllers
