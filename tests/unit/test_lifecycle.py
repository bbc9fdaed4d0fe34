"""fastchat.lifecycle: readiness (route traffic here?) through a server's life."""

from __future__ import annotations

from fastchat.lifecycle import Readiness


def test_not_ready_until_the_store_is_open_and_both_ports_are_bound() -> None:
    r = Readiness()
    assert r.state == "starting" and r.reason() is not None
    assert "store" in (r.reason() or "")
    r.store_open = True
    assert r.state == "starting"
    assert "WS_PORT" in (r.reason() or "") and "store" not in (r.reason() or "")
    r.ws_port_bound = True
    assert r.state == "starting" and "PORT" in (r.reason() or "")
    r.http_port_bound = True
    assert r.state == "ready" and r.reason() is None


def test_draining_is_not_ready_whatever_else_holds() -> None:
    r = Readiness()
    r.store_open = r.ws_port_bound = r.http_port_bound = True
    r.draining = True
    assert r.state == "draining"
    assert (r.reason() or "").startswith("draining")
