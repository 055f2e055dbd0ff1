"""The composition root: CLI, configuration, wiring, simulate and demo, gRPC services."""
