"""What every service's OpenAPI document declares beyond its routes: the answers the runtime itself gives.

Every route can be refused before its code runs (runtime.http's `Guard`, runtime.auth, the
rate limits) and every refusal is `application/problem+json`: those answers are added to every
operation here, once, so that clients generated from the documents handle them. A list that can
be had as a file (its `format` query parameter) declares CSV and XLSX beside JSON.

What the `Guard` refuses is declared too: a text (or a key) of a body holds no control character
but a line break (`TEXT_PATTERN`), a path or query parameter none at all (`ONE_LINE`); and an
optional parameter is absent rather than `null` (a header or a query has no null).
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from contracts.envelope import ONE_LINE
from runtime.export import CSV_TYPE, XLSX_TYPE
from runtime.guard import TEXT_PATTERN
from runtime.problems import PROBLEM_JSON

PROBLEM_SCHEMA: Final = {
    "title": "Problem",
    "description": "An RFC 9457 problem: what was refused and why (nothing was changed)",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
    },
    "additionalProperties": True,
}

EVERY_ROUTE: Final = {
    "400": "Bad request: a control character in the path or the query, a malformed header or value",
    "401": "No valid bearer token (missing, expired, forged, or living longer than the service accepts)",
    "403": "The caller's role (or grant) does not allow this",
    "404": "Not found, or outside the caller's subtree (not told apart)",
    "413": "The body is larger than the service accepts",
    "422": "The request does not match the schema, or breaks a rule",
    "429": "More requests than the caller's share; see Retry-After",
    "500": "The server failed; nothing was changed by this request",
}
COMMANDS: Final = {
    "409": "Conflict: the stream moved on (If-Match), the target exists, or another deployment owns it",
}
ERASED: Final[dict[int | str, dict[str, Any]]] = {410: {"description": "The cadre's personal data was erased for good"}}
"""`responses=` of a route that reads or uses a cadre's personal data (runtime.keystore answers 410 once erased)."""
_WRITE_METHODS: Final = frozenset({"post", "put", "patch", "delete"})
_UNAUTHENTICATED: Final = frozenset({"/health/live", "/health/ready"})


def declare_problems(app: FastAPI) -> None:
    """Make `app.openapi()` declare the runtime's answers on every operation (see the module)."""

    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            _amend(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = document  # type: ignore[method-assign]


_CONSTRAINED: Final = frozenset({"pattern", "format", "enum", "const"})
JSON_REF: Final = "#/components/schemas/Json"


def _json_schema() -> dict[str, Any]:
    """Any JSON value whose texts and keys hold what `TEXT_PATTERN` allows (an object's free-form part)."""
    text = {"type": "string", "pattern": TEXT_PATTERN}
    return {
        "title": "Json",
        "description": "Any JSON value; no text or key holds a control character but a line break",
        "anyOf": [
            text,
            {"type": "number"},
            {"type": "boolean"},
            {"type": "null"},
            {"type": "array", "items": {"$ref": JSON_REF}},
            {"type": "object", "propertyNames": text, "additionalProperties": {"$ref": JSON_REF}},
        ],
    }


def _texts(schema: Any, pattern: str) -> None:
    """Declare `pattern` on every free text of `schema`, and on the keys of every open object, in place."""
    if isinstance(schema, list):
        for item in schema:
            _texts(item, pattern)
        return
    if not isinstance(schema, dict):
        return
    if schema.get("type") == "string" and not _CONSTRAINED & schema.keys():
        schema["pattern"] = pattern
    if schema.get("type") == "object" and schema.get("additionalProperties", True) is not False:
        schema.setdefault("propertyNames", {"pattern": pattern})
        if schema.get("additionalProperties", True) is True:
            schema["additionalProperties"] = {"$ref": JSON_REF}
    if schema.get("type") == "array" and schema.get("items", {}) == {}:
        schema["items"] = {"$ref": JSON_REF}
    for key, value in schema.items():
        if key not in {"examples", "example", "default", "propertyNames"}:
            _texts(value, pattern)


def _parameter(parameter: dict[str, Any]) -> None:
    """An optional parameter's schema without its `null` (absent is how it is not given); its texts on one line."""
    schema = parameter.get("schema", {})
    options = schema.get("anyOf")
    if not parameter.get("required") and options and {"type": "null"} in options:
        rest = [option for option in options if option != {"type": "null"}]
        if len(rest) == 1:
            del schema["anyOf"]
            schema.update({**rest[0], **schema})
        else:
            schema["anyOf"] = rest
    _texts(schema, ONE_LINE)


def _inputs(operation: dict[str, Any]) -> None:
    for parameter in operation.get("parameters", []):
        _parameter(parameter)
    for content in operation.get("requestBody", {}).get("content", {}).values():
        _texts(content.get("schema"), TEXT_PATTERN)


def _amend(schema: dict[str, Any]) -> None:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    _texts(components, TEXT_PATTERN)
    components["Json"] = _json_schema()
    components["Problem"] = PROBLEM_SCHEMA
    problem = {"content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            _inputs(operation)
            responses: dict[str, Any] = operation.setdefault("responses", {})
            declared = dict(EVERY_ROUTE)
            if method in _WRITE_METHODS:
                declared |= COMMANDS
            if path in _UNAUTHENTICATED:
                declared = {"500": EVERY_ROUTE["500"], "400": EVERY_ROUTE["400"], "413": EVERY_ROUTE["413"]}
            for status, description in declared.items():
                responses.setdefault(status, {"description": description})
            for status, response in responses.items():
                # Every refusal is a problem, but for an answer a route declared with its own content (503 ready).
                if status.startswith(("4", "5")) and (status in declared or "content" not in response):
                    response.update(problem)
            if any(p.get("name") == "format" and p.get("in") == "query" for p in operation.get("parameters", [])):
                content = responses.get("200", {}).setdefault("content", {})
                content[CSV_TYPE] = {"schema": {"type": "string"}}
                content[XLSX_TYPE] = {"schema": {"type": "string", "format": "binary"}}
