"""An embedded LiteLLM simulator: the test double of the whole suite and the demo upstream."""

from aria_stream.simulator.dataset import SimRow, Variant
from aria_stream.simulator.server import (
    DEFAULT_KEY,
    FAULT_KINDS,
    Fault,
    FaultKind,
    RequestRecord,
    Simulator,
    SimulatorConfig,
)

__all__ = [
    "DEFAULT_KEY",
    "FAULT_KINDS",
    "Fault",
    "FaultKind",
    "RequestRecord",
    "SimRow",
    "Simulator",
    "SimulatorConfig",
    "Variant",
]
