"""Root conftest: registers the shared fixture plugins (the lead keeps this list)."""

pytest_plugins = ["tests.controlplane.fixtures", "tests.simulator.fixtures"]
