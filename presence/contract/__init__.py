"""The shapes of everything that crosses the wire, as pydantic models: HTTP bodies
(:mod:`.http`), Socket.IO payloads (:mod:`.events`). Validation and the published schemas
(``/openapi.json``) both come from these models, so they cannot drift apart.

pydantic v2 rather than msgspec: its JSON Schema output is the OpenAPI 3.1 dialect, constraints
(lengths, patterns, ranges) land in the schema by themselves, and its errors name the field;
msgspec decodes faster, but every body here is a few hundred bytes and validation is a few
microseconds either way.
"""
