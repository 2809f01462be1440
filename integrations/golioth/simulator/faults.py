"""Faults on demand: a share of the simulator's calls fail as a real network and API can.

Golioth publishes no rate limits or error rates [guess]: each call fails with probability `rate`,
as one of 500, 503, 429 + Retry-After, a timeout (an answer slower than the client waits), a reset
connection or a truncated body, drawn from a seeded RNG so a failing test replays.
"""

from __future__ import annotations

from dataclasses import dataclass

from integrations.golioth.simulator import api

FAULT_KINDS = ("500", "503", "429", "timeout", "reset", "truncate")


@dataclass(frozen=True)
class FaultConfig:
    """Each call fails with probability `rate`, as one of `kinds` (drawn from a seeded RNG)."""

    rate: float = 0.0
    kinds: tuple[str, ...] = FAULT_KINDS
    retry_after: float = 1
    slow_seconds: float = 2.0
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = set(self.kinds) - set(FAULT_KINDS)
        if unknown or not self.kinds:
            raise ValueError(f"fault kinds must be among {FAULT_KINDS}, got {self.kinds}")


_FAULT_REPLIES = {
    "500": (500, 13, "internal error"),
    "503": (503, 14, "service unavailable"),
    "429": (429, 8, "too many requests"),
}


def fault_reply(
    fault: str | None, faults: FaultConfig | None
) -> tuple[int, bytes, dict[str, str]] | None:
    """Status, body and headers of a fault that is an HTTP answer; None for the others."""
    if fault not in _FAULT_REPLIES or faults is None:
        return None
    status, code, message = _FAULT_REPLIES[fault]
    headers = {"Retry-After": f"{faults.retry_after:g}"} if fault == "429" else {}
    return status, api.error_body(code, message), headers
