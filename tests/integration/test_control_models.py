"""Control API response models: the OpenAPI document's response schemas are the models' own, and
the whole bot's live answers (simulator, feeds, engine, journal) validate against them."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
from pydantic import BaseModel, RootModel

from perpbot.control.models import REF_TEMPLATE, RESPONSE_MODELS, component_schemas
from perpbot.control.server import ROUTES, openapi_document
from perpbot.reliability.live import LiveBot

TOKEN = "models-token-5e6f7a8b9c0d"


def _schema_of(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template=REF_TEMPLATE)
    schema.pop("$defs", None)
    return schema


def test_every_json_route_documents_its_models_schema():
    doc = openapi_document()
    components = doc["components"]["schemas"]
    assert components == component_schemas()
    for route in ROUTES:
        ok = doc["paths"][route.path][route.method.lower()]["responses"]["200"]
        if route.handler_name == "metrics":
            assert "text/plain" in ok["content"]
            continue
        model = RESPONSE_MODELS[route.handler_name]
        ref = ok["content"]["application/json"]["schema"]["$ref"]
        assert ref == f"#/components/schemas/{model.__name__}", route
        assert components[model.__name__] == _schema_of(model), route
        # Every nested reference resolves to a component.
        for name in _refs(components[model.__name__]):
            assert name in components, (route, name)
    assert set(RESPONSE_MODELS) == {r.handler_name for r in ROUTES} - {"metrics"}


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"].rsplit("/", 1)[1]} if isinstance(node.get("$ref"), str) else set()
        for value in node.values():
            found |= _refs(value)
        return found
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node)) if node else set()
    return set()


def _check(handler_name: str, answer: Any) -> None:
    """The answer validates against its model, round-trips unchanged, and has no field the model
    does not declare (the models describe everything the real producers send)."""
    model = RESPONSE_MODELS[handler_name]
    parsed = model.model_validate(answer)
    assert parsed.model_dump(mode="json", exclude_unset=True) == answer, handler_name
    _no_undeclared(parsed, handler_name)


def _no_undeclared(value: Any, where: str) -> None:
    if isinstance(value, RootModel):
        _no_undeclared(value.root, where)
    elif isinstance(value, BaseModel):
        if type(value).__name__ not in ("ConfigAnswer", "OpenApiAnswer"):
            assert not value.model_extra, f"{where}: {type(value).__name__} lacks fields {sorted(value.model_extra or {})}"
        for name in type(value).model_fields:
            _no_undeclared(getattr(value, name), f"{where}.{name}")
    elif isinstance(value, dict):
        for key, item in value.items():
            _no_undeclared(item, f"{where}[{key}]")
    elif isinstance(value, list):
        for item in value:
            _no_undeclared(item, where)


async def test_live_answers_of_every_route_validate_against_their_models(tmp_path):
    async with LiveBot(tmp_path, seed=5, api_token=TOKEN) as bot:
        base = f"http://127.0.0.1:{bot.app.control.port}"
        auth = {"Authorization": f"Bearer {TOKEN}"}
        # Let it trade for a moment, so positions, fills and books have content.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not bot.app.engine.engine.portfolio.trades_since(0):
            await asyncio.sleep(0.2)
        async with aiohttp.ClientSession(trust_env=False) as http:
            for route in ROUTES:
                if route.handler_name in ("metrics", "close_all", "pause", "resume", "operation"):
                    continue
                path = route.path
                if "{venue}" in path:
                    venue, symbol = next(iter(bot.app.store.books))
                    path = path.replace("{venue}", venue).replace("{symbol}", symbol)
                if "{trade_id}" in path:  # a trade the bot made (its attribution)
                    trades = await bot.app.engine.engine.desk.attributions.store.trades_since(0)
                    assert trades, "the bot made no trade in 20 s"
                    path = path.replace("{trade_id}", trades[0].trade_id)
                async with http.request(route.method, base + path, headers=auth) as resp:
                    assert resp.status in (200, 503) if route.handler_name == "ready" else resp.status == 200, \
                        (route.path, resp.status, await resp.text())
                    _check(route.handler_name, await resp.json())
            answers = {}
            for name, path in (("pause", "/api/trading/pause"), ("close_all", "/api/positions/close-all"),
                               ("resume", "/api/trading/resume")):
                async with http.post(base + path, headers=auth, json={"reason": "models test"}) as resp:
                    assert resp.status == 200, (path, await resp.text())
                    answers[name] = await resp.json()
                    _check(name, answers[name])
            # The close-all's operation, as GET /api/operations/{id} answers it once done.
            async with http.get(f"{base}/api/operations/{answers['close_all']['operation_id']}", headers=auth) as resp:
                assert resp.status == 200
                _check("operation", await resp.json())
