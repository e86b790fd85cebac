"""The runtime's HTTP rules and what the OpenAPI documents declare of them (found by schemathesis)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx
import orjson
import pytest
from fastapi import FastAPI, Header, Request
from pydantic import BaseModel, ConfigDict

from contracts.envelope import ONE_LINE
from runtime import guard, http, openapi, problems


class Note(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str
    extra: dict[str, Any] = {}


def _app() -> FastAPI:
    app = FastAPI()
    http.install(app, service="test", max_body=1024, body_limits={"/upload": 64 * 1024})
    openapi.declare_problems(app)

    @app.get("/notes")
    async def read(on: http.Day | None = None, tag: Annotated[str | None, Header(alias="X-Tag")] = None) -> str:
        return f"{on} {tag}"

    @app.post("/notes")
    async def write(note: Note) -> str:
        return note.text

    @app.post("/upload")
    async def upload(request: Request) -> int:
        return len(await http.read_body(request, 64 * 1024))

    return app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_app()), base_url="http://test") as client:
        yield client


async def test_a_405_names_every_method_of_the_path(client: httpx.AsyncClient) -> None:
    answer = await client.delete("/notes")
    assert answer.status_code == 405
    assert answer.headers["content-type"] == problems.PROBLEM_JSON
    assert set(answer.headers["allow"].split(", ")) >= {"GET", "POST"}


async def test_a_route_that_bounds_its_body_itself_takes_more_than_the_service_limit(
    client: httpx.AsyncClient,
) -> None:
    assert (await client.post("/upload", content=b"x" * 4096)).json() == 4096
    assert (await client.post("/upload", content=b"x" * (64 * 1024 + 1))).status_code == 413
    assert (await client.post("/notes", json={"text": "x" * 4096})).status_code == 413  # the service's own limit


async def test_a_date_parameter_is_iso_8601_not_a_number(client: httpx.AsyncClient) -> None:
    assert (await client.get("/notes", params={"on": "2020-02-29"})).status_code == 200
    assert (await client.get("/notes", params={"on": "0"})).status_code == 422  # pydantic alone: 1970-01-01


def test_the_document_declares_what_the_guard_refuses() -> None:
    document = _app().openapi()
    parameters = {p["name"]: p["schema"] for p in document["paths"]["/notes"]["get"]["parameters"]}
    assert parameters["X-Tag"]["type"] == "string"  # absent, not null: no anyOf with null
    assert parameters["X-Tag"]["pattern"] == ONE_LINE
    note = document["components"]["schemas"]["Note"]
    assert note["properties"]["text"]["pattern"] == guard.TEXT_PATTERN
    assert note["properties"]["extra"]["additionalProperties"] == {"$ref": openapi.JSON_REF}
    assert note["properties"]["extra"]["propertyNames"] == {"pattern": guard.TEXT_PATTERN}
    for text in ("plain", "two\nlines", "a\ttab", "汉字"):
        assert bool(re.match(guard.TEXT_PATTERN, text)) is not guard.has_control(text, breaks=False)
    for text in ("nul\x00", "bell\x07", "esc\x1b", "del\x7f"):
        assert re.match(guard.TEXT_PATTERN, text) is None
        assert guard.has_control(text, breaks=False)
    refusals = document["paths"]["/notes"]["post"]["responses"]
    assert {"400", "401", "403", "404", "409", "413", "422", "429", "500"} <= refusals.keys()
    assert all(problems.PROBLEM_JSON in refusals[status]["content"] for status in refusals if status >= "400")


async def test_a_control_character_in_a_body_is_refused_as_declared(client: httpx.AsyncClient) -> None:
    assert (await client.post("/notes", json={"text": "two\nlines"})).status_code == 200
    refused = await client.post("/notes", json={"text": "ok", "extra": {"k": ["\x00"]}})
    assert refused.status_code == 422
    assert refused.headers["content-type"] == problems.PROBLEM_JSON


async def test_a_refusal_lists_a_bounded_number_of_errors() -> None:
    """Issue 22, hole 5: one error per unknown field made a 9 MB answer of a 1.3 MB body."""
    app = FastAPI()
    http.install(app, service="test")  # the services' body limit (8 MiB)

    @app.post("/notes")
    async def write(note: Note) -> str:
        return note.text

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        await _bounded_errors(client)


async def _bounded_errors(client: httpx.AsyncClient) -> None:
    wide = await client.post("/notes", json={"text": "ok", **{f"f{n}": n for n in range(100_000)}})
    assert wide.status_code == 422
    assert wide.headers["content-type"] == problems.PROBLEM_JSON
    assert len(wide.content) < 1024
    assert "more than 1000 members" in wide.json()["detail"]
    many = await client.post("/notes", json={"text": "ok", **{f"f{n}": n for n in range(50)}})
    assert many.status_code == 422
    assert len(many.json()["errors"]) == problems.MAX_VALIDATION_ERRORS
    assert many.json()["errors_count"] == 50
    long_name = await client.post("/notes", json={"text": "ok", "x" * 100_000: 1})
    assert long_name.status_code == 422
    assert len(long_name.content) < 4096


def test_every_list_a_problem_carries_is_bounded() -> None:
    answer = problems.problem(422, "Invalid", "many", violations=[f"v{n}" for n in range(1000)])
    body = orjson.loads(answer.body)
    assert len(body["violations"]) == problems.MAX_VALIDATION_ERRORS
    assert body["violations_count"] == 1000
