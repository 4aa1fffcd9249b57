"""The HTTP service: FastAPI over an `Engine`, served by uvicorn (`distillrec serve BUNDLE`).

Endpoints: GET /health; POST /recommend (known user, or a new user from attributes and/or
recent items: "cold_start": true); GET /items/{id}/similar; POST /items (a new item from its
attributes, and its title for the content student); POST /explain. FastAPI publishes the OpenAPI schema at /openapi.json (/docs).

Every client mistake is a 4xx whose "detail" says what was wrong: unknown user or item (404),
a field out of range or of the wrong type (422), malformed JSON (400), a missing or wrong API
key (401), a body over the size limit (413). Handlers are `async` and run on the event loop:
each is a fraction of a millisecond of numpy work, cheaper than a thread hand-off, and one loop
also serialises `POST /items` against reads without locks. Added items live in memory, in the
process that received them: with `--workers N` each worker has its own catalog, so add items
through a single-worker service (or export a new bundle) when every request must see them.
"""

from __future__ import annotations

import hmac
import os
from typing import Any, Optional, Union

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from distillrec.errors import DistillrecError
from distillrec.serving.engine import Engine, RequestError

MAX_BODY_BYTES = 64 * 1024
MAX_K = 1000
Id = Union[str, int]  # ids as in the source data; JSON numbers are accepted and read as text
Attribute = Union[str, int, float, list[str], None]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not silently ignored


class NewUser(_Strict):
    user_id: Optional[Id] = Field(None, description="A known user's id, as in the source data.")
    attributes: Optional[dict[str, Attribute]] = Field(
        None, description="A new user's attributes, e.g. {\"age\": 25, \"gender\": \"F\", \"occupation\": \"writer\"}.")
    recent_items: Optional[list[Id]] = Field(None, max_length=MAX_K, description="Item ids a new user interacted with.")


class RecommendRequest(NewUser):
    k: int = Field(10, ge=1, le=MAX_K)
    exclude_seen: bool = Field(True, description="Leave out the user's seen items (a new user: recent_items).")


class ExplainRequest(NewUser):
    item_id: Id
    n: int = Field(5, ge=1, le=100, description="How many history items and features to return.")


class NewItem(_Strict):
    item_id: Id
    title: Optional[str] = Field(None, max_length=1000,
                                 description="Shown in results; the content student also encodes it (required there).")
    attributes: dict[str, Attribute] = Field(
        default_factory=dict, description="Item features, e.g. {\"genres\": [\"Comedy\"], \"year\": 2024}.")


class Item(BaseModel):
    item_id: str
    score: float
    title: Optional[str] = None


class Recommendations(BaseModel):
    user_id: Optional[str] = None
    cold_start: bool
    model: str
    items: list[Item]


class Similar(BaseModel):
    item_id: str
    items: list[Item]


class Added(BaseModel):
    item_id: str
    index: int
    cold_start: bool = True


class HistoryItem(BaseModel):
    item_id: str
    title: Optional[str] = None
    similarity: float


class FeatureEffect(BaseModel):
    side: str
    name: str
    value: Any
    contribution: float


class Explanation(BaseModel):
    item_id: str
    title: Optional[str] = None
    score: float
    history: list[HistoryItem]
    features: list[FeatureEffect]


def _json(content: dict) -> JSONResponse:
    """The engine's output as is: it already has the response model's shape, and skipping
    FastAPI's re-validation of every item is a measurable share of a request's time."""
    return JSONResponse(content)


class BodyLimit:
    """Refuse request bodies over `limit` bytes with 413, by Content-Length or while streaming."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await _too_large(send, self.limit)
        # A streamed (chunked) body: count while reading; past the limit answer 413 at once and
        # tell the app the client left, dropping whatever it still tries to send.
        seen, refused = 0, False

        async def limited_receive():
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                refused = True
                await _too_large(send, self.limit)
                return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            if not refused:
                await send(message)
        await self.app(scope, limited_receive, guarded_send)


async def _too_large(send, limit: int) -> None:
    body = f'{{"detail":"request body over the {limit}-byte limit"}}'.encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def create_app(engine: Engine, *, api_key: str | None = None, max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    bearer = HTTPBearer(auto_error=False, description="Required when the service runs with an API key.")

    async def authorised(credentials: Optional[HTTPAuthorizationCredentials] = Depends(bearer)) -> None:
        if api_key is None:
            return
        if credentials is None or not hmac.compare_digest(credentials.credentials.encode(), api_key.encode()):
            raise HTTPException(401, "missing or wrong API key (send Authorization: Bearer KEY)",
                                headers={"WWW-Authenticate": "Bearer"})

    app = FastAPI(title="distillrec", version="1", description="Top-K recommendations from a distilled student.")
    guarded = [Depends(authorised)] if api_key is not None else []

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            reason = next(e for e in errors if e.get("type") == "json_invalid").get("ctx", {}).get("error", "")
            return JSONResponse({"detail": f"malformed JSON body: {reason}".rstrip(": ")}, status_code=400)
        messages = [f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}" for e in errors]
        return JSONResponse({"detail": "; ".join(messages)}, status_code=422)

    @app.exception_handler(DistillrecError)
    async def _request_error(request: Request, exc: DistillrecError):
        return JSONResponse({"detail": str(exc)}, status_code=getattr(exc, "status", 422))

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "model": engine.model_name, "n_users": len(engine.user_ids),
                "n_items": engine.n_items, "index": engine.index.kind}

    @app.post("/recommend", response_model=Recommendations, dependencies=guarded)
    async def recommend(request: RecommendRequest) -> JSONResponse:
        if request.user_id is not None:
            if request.attributes or request.recent_items:
                raise RequestError("give either user_id (a known user) or attributes/recent_items (a new user), not both")
            items = engine.recommend(str(request.user_id), request.k, request.exclude_seen)
            return _json({"user_id": str(request.user_id), "cold_start": False, "model": engine.model_name,
                          "items": items})
        items = engine.recommend_new(request.attributes, [str(i) for i in request.recent_items or ()],
                                     request.k, request.exclude_seen)
        return _json({"user_id": None, "cold_start": True, "model": engine.model_name, "items": items})

    @app.get("/items/{item_id:path}/similar", response_model=Similar, dependencies=guarded)
    async def similar(item_id: str, k: int = Query(10, ge=1, le=MAX_K)) -> dict:
        return {"item_id": item_id, "items": engine.similar_items(item_id, k)}

    @app.post("/items", response_model=Added, status_code=201, dependencies=guarded)
    async def add_item(item: NewItem) -> dict:
        return {"item_id": str(item.item_id), "index": engine.add_item(str(item.item_id), item.attributes, item.title)}

    @app.post("/explain", response_model=Explanation, dependencies=guarded)
    async def explain(request: ExplainRequest) -> dict:
        if request.user_id is None and not (request.attributes or request.recent_items):
            raise RequestError("give user_id (a known user) or attributes/recent_items (a new user)")
        return engine.explain(str(request.item_id), user_id=None if request.user_id is None else str(request.user_id),
                              attributes=request.attributes, recent_items=[str(i) for i in request.recent_items or ()],
                              n=request.n)

    app.add_middleware(BodyLimit, limit=max_body_bytes)
    return app


def app_from_env() -> FastAPI:
    """uvicorn factory for `--workers N` (each worker process loads the bundle itself)."""
    from distillrec.serving.bundle import load_bundle

    engine = Engine.from_bundle(load_bundle(os.environ["DISTILLREC_BUNDLE"]),
                                index=os.environ.get("DISTILLREC_INDEX", "exact"))
    return create_app(engine, api_key=os.environ.get("DISTILLREC_API_KEY") or None)


def serve(bundle_path, *, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
          index: str = "exact", workers: int = 1, log_level: str = "warning") -> None:
    """Verify and load the bundle (errors surface before the server starts), then run uvicorn."""
    import importlib.util

    import uvicorn

    from distillrec.serving.bundle import load_bundle

    engine = Engine.from_bundle(load_bundle(bundle_path), index=index)
    fast = {"loop": "uvloop"} if importlib.util.find_spec("uvloop") else {}
    if importlib.util.find_spec("httptools"):
        fast["http"] = "httptools"
    if workers > 1:
        os.environ.update({"DISTILLREC_BUNDLE": str(bundle_path), "DISTILLREC_INDEX": index,
                           "DISTILLREC_API_KEY": api_key or ""})
        uvicorn.run("distillrec.serving.app:app_from_env", factory=True, host=host, port=port, workers=workers,
                    log_level=log_level, access_log=False, **fast)
        return
    uvicorn.run(create_app(engine, api_key=api_key), host=host, port=port, log_level=log_level,
                access_log=False, **fast)
