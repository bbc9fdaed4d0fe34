"""The REST API describes itself: /schema (Swagger UI) and /schema/openapi.json, a valid
OpenAPI document with every route, typed from the Structs the code answers with."""

from __future__ import annotations

import httpx
from openapi_spec_validator import validate

from tests.conftest import ServerProcess


def test_the_document_is_valid_and_lists_every_api_route(server: ServerProcess) -> None:
    r = httpx.get(f"{server.http}/schema/openapi.json", timeout=10)
    assert r.status_code == 200 and "json" in r.headers["content-type"]
    doc = r.json()
    validate(doc)
    operations = {(m.upper(), p) for p, item in doc["paths"].items() for m in item}
    expected = {
        ("GET", "/api/v1/health"),
        ("GET", "/api/v1/ready"),
        ("GET", "/api/v1/stats"),
        ("GET", "/api/v1/messages/{room}"),
        ("POST", "/api/v1/messages/{room}"),
        ("GET", "/api/v1/posts"),
        ("POST", "/api/v1/posts"),
        ("GET", "/api/v1/posts/{post_id}"),
        ("GET", "/api/v1/posts/{post_id}/comments"),
        ("POST", "/api/v1/posts/{post_id}/comments"),
        ("GET", "/api/v1/test/message"),
        ("GET", "/api/v1/test/comment"),
    }
    assert expected <= operations, expected - operations
    assert not {p for _, p in operations if not p.startswith("/api/v1/")}  # no pages


def test_bodies_and_refusals_are_typed_from_the_code(server: ServerProcess) -> None:
    doc = httpx.get(f"{server.http}/schema/openapi.json", timeout=10).json()
    schemas = doc["components"]["schemas"]

    def ref(op: dict, status: str) -> str:  # type: ignore[type-arg]
        return op["responses"][status]["content"]["application/json"]["schema"]["$ref"]

    history = doc["paths"]["/api/v1/messages/{room}"]["get"]
    assert ref(history, "200").endswith("/RoomPage") and ref(history, "400").endswith("/ErrorBody")
    assert {p["name"] for p in history["parameters"]} >= {"room", "limit", "before", "after"}
    send = doc["paths"]["/api/v1/messages/{room}"]["post"]
    assert send["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/NewMessage"
    )
    for status in ("201", "400", "403", "413", "415", "503"):
        assert status in send["responses"], status
    assert set(schemas["RoomPage"]["properties"]) == {
        "room",
        "messages",
        "count",
        "has_more",
        "next",
    }
    assert set(schemas["ErrorBody"]["required"]) == {"code", "message"}
    health = doc["paths"]["/api/v1/health"]["get"]
    assert ref(health, "200").endswith("/HealthReport") and "503" in health["responses"]
    assert ref(doc["paths"]["/api/v1/ready"]["get"], "503").endswith("/ReadyReport")
    assert ref(doc["paths"]["/api/v1/posts"]["get"], "200").endswith("/PostList")
    one_post = doc["paths"]["/api/v1/posts/{post_id}"]["get"]
    assert ref(one_post, "200").endswith("/PostWithComments")


def test_the_schema_page_is_served(server: ServerProcess) -> None:
    r = httpx.get(f"{server.http}/schema", timeout=10, follow_redirects=True)
    assert r.status_code == 200 and "swagger" in r.text.lower()
