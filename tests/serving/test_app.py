"""The real service: uvicorn on a free loopback port in a thread, exercised over HTTP."""

import socket
import threading
import time

import httpx
import pytest
import uvicorn

from distillrec.serving.app import create_app
from distillrec.serving.bundle import load_bundle
from distillrec.serving.engine import Engine

KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def service(bundles):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = create_app(Engine.from_bundle(load_bundle(bundles["two-tower"])), api_key=KEY)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the service did not start"
        time.sleep(0.05)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        yield client
    server.should_exit = True
    thread.join(timeout=10)
    assert not thread.is_alive()


def test_every_endpoint(service):
    health = service.get("/health")
    assert health.status_code == 200 and health.json()["n_items"] == 1682
    known = service.post("/recommend", json={"user_id": "1", "k": 5}, headers=AUTH).json()
    assert known["cold_start"] is False and len(known["items"]) == 5 and known["items"][0]["title"]
    assert service.post("/recommend", json={"user_id": 1, "k": 5}, headers=AUTH).json() == known
    new = service.post("/recommend", json={"attributes": {"age": 25, "gender": "M"}, "recent_items": ["50"],
                                           "k": 3}, headers=AUTH).json()
    assert new["cold_start"] is True and "50" not in [i["item_id"] for i in new["items"]]
    similar = service.get("/items/50/similar", params={"k": 4}, headers=AUTH).json()
    assert len(similar["items"]) == 4 and "50" not in [i["item_id"] for i in similar["items"]]
    added = service.post("/items", json={"item_id": "film/2024", "title": "A film",
                                         "attributes": {"genres": ["Drama"], "year": 2024}}, headers=AUTH)
    assert added.status_code == 201 and added.json()["index"] == 1682
    assert service.get("/items/film/2024/similar", headers=AUTH).status_code == 200  # ids may hold slashes
    explained = service.post("/explain", json={"user_id": "1", "item_id": known["items"][0]["item_id"]}, headers=AUTH)
    assert explained.status_code == 200 and explained.json()["history"] and explained.json()["features"]
    schema = service.get("/openapi.json").json()
    assert {"/health", "/recommend", "/items", "/explain", "/items/{item_id}/similar"} <= set(schema["paths"])


@pytest.mark.parametrize("method, path, kwargs, status, message", [
    ("post", "/recommend", {"json": {"user_id": "1"}, "headers": {}}, 401, "API key"),
    ("post", "/recommend", {"json": {"user_id": "1"}, "headers": {"Authorization": "Bearer wrong"}}, 401, "API key"),
    ("post", "/recommend", {"json": {"user_id": "nobody"}}, 404, "unknown user_id 'nobody'"),
    ("post", "/recommend", {"json": {"user_id": "1", "k": 0}}, 422, "k: Input should be greater than or equal to 1"),
    ("post", "/recommend", {"json": {"user_id": "1", "k": 1001}}, 422, "k: Input should be less than or equal to 1000"),
    ("post", "/recommend", {"content": b'{"user_id": "1",', "headers": {"Content-Type": "application/json"}},
     400, "malformed JSON"),
    ("post", "/recommend", {"json": {"user_id": "1", "recent_items": ["x"] * 30000}}, 413, "limit"),
    ("post", "/recommend", {"json": {"user_id": "1", "colour": "red"}}, 422, "colour: Extra inputs are not permitted"),
    ("post", "/recommend", {"json": {}}, 422, "needs attributes and/or recent_items"),
    ("post", "/recommend", {"json": {"recent_items": ["no-such-item"]}}, 404, "unknown item id(s) 'no-such-item'"),
    ("post", "/recommend", {"json": {"attributes": {"height": 180}}}, 422, "unknown attribute(s) 'height'"),
    ("post", "/recommend", {"json": {"attributes": {"age": ["x"]}}}, 422, "expected one value"),
    ("get", "/items/no-such-item/similar", {}, 404, "unknown item_id 'no-such-item'"),
    ("get", "/items/50/similar?k=5000", {}, 422, "k: Input should be less than or equal to 1000"),
    ("post", "/items", {"json": {"item_id": "50", "attributes": {}}}, 409, "already exists"),
    ("post", "/explain", {"json": {"user_id": "1", "item_id": "nope"}}, 404, "unknown item_id 'nope'"),
    ("post", "/explain", {"json": {"item_id": "50"}}, 422, "give user_id"),
])
def test_bad_requests_get_a_clear_4xx(service, method, path, kwargs, status, message):
    kwargs = {"headers": AUTH, **kwargs}
    response = getattr(service, method)(path, **kwargs)
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]


def test_a_streamed_body_over_the_limit_is_refused_and_the_service_goes_on(service):
    def chunks():  # no Content-Length: httpx sends it chunked, so the limit is enforced while reading
        yield b'{"user_id": "1", "recent_items": ['
        for _ in range(2000):
            yield b'"' + b"x" * 100 + b'",'
        yield b'"1"]}'
    response = service.post("/recommend", content=chunks(), headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 413 and "limit" in response.json()["detail"]
    assert service.post("/recommend", json={"user_id": "1", "k": 2}, headers=AUTH).status_code == 200
