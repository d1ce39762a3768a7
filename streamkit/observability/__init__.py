"""Prometheus collectors and the HTTP endpoint (/metrics /healthz /readyz /livez)."""
