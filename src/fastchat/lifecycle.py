"""Readiness: whether this process should be sent traffic now (`GET /api/v1/ready`).

Liveness (`GET /api/v1/health`) says the process works and its database answers; a load
balancer or Kubernetes restarts what fails it. Readiness says whether to route clients here:
not before the store is open and both ports are bound, and no longer once a SIGTERM has
started the drain (the process is alive and finishing its work, but new clients belong on
another one). `server.py` sets the flags as it starts and stops; the app only reads them.
"""

from __future__ import annotations


class Readiness:
    """The states readiness depends on, set on the loop thread by the server."""

    def __init__(self) -> None:
        self.store_open = False
        self.ws_port_bound = False
        self.http_port_bound = False
        self.draining = False

    @property
    def state(self) -> str:
        """`ready`, `starting` or `draining`."""
        if self.draining:
            return "draining"
        if self.store_open and self.ws_port_bound and self.http_port_bound:
            return "ready"
        return "starting"

    def reason(self) -> str | None:
        """Why this process is not ready, for people; None when it is."""
        if self.draining:
            return "draining: the server is shutting down; connect to another instance"
        waiting = [
            what
            for what, done in (
                ("the store to open", self.store_open),
                ("WS_PORT to be bound", self.ws_port_bound),
                ("PORT to be bound", self.http_port_bound),
            )
            if not done
        ]
        if waiting:
            return "starting: waiting for " + ", ".join(waiting)
        return None
