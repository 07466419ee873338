"""A faithful stand-in for Northflank's LLM model deployment API, plus a control API for tests.

The simulator is a real HTTP server that answers the documented ``/v1`` routes the operator uses
(same paths, envelopes, pagination, scoping, rate-limit headers) and lets tests script state changes
and faults through ``/_simulator/...``. The operator never imports it; it only ever talks HTTP to it.
"""

from northflank_api_simulator.control import SimulatorControl, SimulatorControlError
from northflank_api_simulator.server import create_app, run_server
from northflank_api_simulator.state import SimulatorState

__all__ = ["SimulatorControl", "SimulatorControlError", "SimulatorState", "create_app", "run_server"]
