"""What routes get from the application: the engine and the settings (kept on ``app.state``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from flowkeeper.config import Settings
from flowkeeper.runtime import Engine


# Dependencies are ``async def``: FastAPI runs plain ``def`` dependencies in a thread
# pool, which costs a thread hop per request for a mere attribute read.
async def engine_of(request: Request) -> Engine:
    """The engine the app was created with."""
    engine: Engine = request.app.state.engine
    return engine


async def settings_of(request: Request) -> Settings:
    """The settings the app was created with."""
    settings: Settings = request.app.state.settings
    return settings


EngineDep = Annotated[Engine, Depends(engine_of)]
SettingsDep = Annotated[Settings, Depends(settings_of)]
