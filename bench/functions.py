"""The benchmark's custom function, registered by import (``engine.function_modules``)."""

from __future__ import annotations

from flowkeeper.activities import function


@function("add_tax", inline=True)
def add_tax(amount: float) -> dict[str, float]:
    return {"total": round(amount * 1.2, 2)}
