"""API: the gRPC services served to users."""
