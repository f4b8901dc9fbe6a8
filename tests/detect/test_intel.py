"""Threat-intel feeds (text, CSV, STIX 2.1 bundle, MISP feed dir, TAXII 2.1) and vectorized matching."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from kubetrail.detect.config import FeedConfig, IntelConfig
from kubetrail.detect.intel import IntelMatcher, ipv4_to_int, load_feed
from kubetrail.detect.testing import batch_of
from kubetrail.schema import from_pylist


def rows() -> pa.RecordBatch:
    return from_pylist(
        [
            {"event.id": "a", "source.ip": "198.51.100.7"},
            {"event.id": "b", "source.ip": "203.0.113.200"},
            {"event.id": "c", "source.ip": "10.1.2.3", "user_agent.original": "evil-scanner/1.0"},
            {"event.id": "d", "container.image.name": "docker.io/xmrig/xmrig:6.21.0"},
            {"event.id": "e", "container.image.name": "nginx@sha256:abc123"},
            {"event.id": "f", "url.original": "http://bad.example.net/x", "source.ip": "not-an-ip"},
            {"event.id": "g", "source.ip": "192.0.2.1"},
        ]
    )


def test_ipv4_to_int_vectorized() -> None:
    values, valid = ipv4_to_int(pa.array(["1.2.3.4", "x", None, "300.1.1.1", "255.255.255.255"]))
    assert valid.tolist() == [True, False, False, False, True]
    assert values[0] == 0x01020304 and values[4] == 0xFFFFFFFF


def test_text_and_csv_feeds_match_every_kind(tmp_path: Path) -> None:
    (tmp_path / "ips.txt").write_text("# bad hosts\n198.51.100.7\n203.0.113.0/24\nbad.example.net\n")
    (tmp_path / "iocs.csv").write_text(
        "type,value\nuser-agent,evil-scanner/1.0\nimage,docker.io/xmrig/xmrig:6.21.0\nimage,sha256:abc123\n"
    )
    matcher = IntelMatcher(
        IntelConfig(
            feeds=[
                FeedConfig(name="list", type="text", path=str(tmp_path / "ips.txt")),
                FeedConfig(name="csv", type="csv", path=str(tmp_path / "iocs.csv")),
            ]
        )
    )
    out, alerts = matcher.match(rows())
    assert out.column("threat.indicator.value").to_pylist() == [
        "198.51.100.7",
        "203.0.113.0/24",
        "evil-scanner/1.0",
        "docker.io/xmrig/xmrig:6.21.0",
        "sha256:abc123",
        "bad.example.net",
        None,
    ]
    assert out.column("threat.feed.name").to_pylist()[:3] == ["list", "list", "csv"]
    assert {a.group_key["threat.indicator.value"] for a in alerts} >= {"198.51.100.7", "203.0.113.0/24"}
    assert all(a.kind == "intel" and a.event_ids for a in alerts)


def test_stix_bundle_and_misp_feed(tmp_path: Path) -> None:
    bundle = {
        "type": "bundle",
        "id": "bundle--5d0092c5-5f74-4287-9642-33f4c354e56d",
        "objects": [
            {
                "type": "indicator",
                "spec_version": "2.1",
                "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
                "created": "2026-01-01T00:00:00.000Z",
                "modified": "2026-01-01T00:00:00.000Z",
                "pattern": "[ipv4-addr:value = '198.51.100.7']",
                "pattern_type": "stix",
                "valid_from": "2026-01-01T00:00:00Z",
            },
            {
                "type": "indicator",
                "spec_version": "2.1",
                "id": "indicator--9e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
                "created": "2026-01-01T00:00:00.000Z",
                "modified": "2026-01-01T00:00:00.000Z",
                "pattern": "[domain-name:value = 'bad.example.net']",
                "pattern_type": "stix",
                "valid_from": "2026-01-01T00:00:00Z",
            },
        ],
    }
    (tmp_path / "bundle.json").write_text(json.dumps(bundle))
    stix = load_feed(FeedConfig(name="stix", type="stix", path=str(tmp_path / "bundle.json")))
    assert {(i.type, i.value) for i in stix} == {
        ("ipv4-addr", "198.51.100.7"),
        ("domain-name", "bad.example.net"),
    }
    misp = tmp_path / "misp"
    misp.mkdir()
    (misp / "manifest.json").write_text(json.dumps({"5f1c": {"info": "x"}}))
    (misp / "5f1c.json").write_text(
        json.dumps(
            {
                "Event": {
                    "Attribute": [
                        {"type": "ip-dst", "value": "192.0.2.1", "to_ids": True},
                        {"type": "user-agent", "value": "evil-scanner/1.0", "to_ids": True},
                        {"type": "comment", "value": "ignored"},
                    ]
                }
            }
        )
    )
    indicators = load_feed(FeedConfig(name="misp", type="misp", path=str(misp)))
    assert {i.value for i in indicators} == {"192.0.2.1", "evil-scanner/1.0"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.integration
def test_taxii_collection_and_refresh() -> None:
    """A tiny TAXII 2.1 server on 127.0.0.1 (FastAPI + uvicorn in a thread) stands in for a real TAXII
    server: discovery, API root, collections and the objects endpoint with TAXII media types and the
    envelope format that taxii2-client speaks."""
    import uvicorn
    from fastapi import FastAPI, Response

    media = "application/taxii+json;version=2.1"
    state: dict[str, Any] = {"ip": "198.51.100.7"}
    app = FastAPI()

    def taxii(body: dict[str, Any]) -> Response:
        return Response(json.dumps(body), media_type=media)

    @app.get("/api1/")
    def api_root() -> Response:
        return taxii(
            {"title": "test", "versions": ["application/taxii+json;version=2.1"], "max_content_length": 10**7}
        )

    @app.get("/api1/collections/c1/")
    def collection() -> Response:
        return taxii(
            {"id": "c1", "title": "iocs", "can_read": True, "can_write": False, "media_types": [media]}
        )

    @app.get("/api1/collections/c1/objects/")
    def objects() -> Response:
        ind = {
            "type": "indicator",
            "spec_version": "2.1",
            "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
            "created": "2026-01-01T00:00:00.000Z",
            "modified": "2026-01-01T00:00:00.000Z",
            "pattern": f"[ipv4-addr:value = '{state['ip']}']",
            "pattern_type": "stix",
            "valid_from": "2026-01-01T00:00:00Z",
        }
        return taxii({"more": False, "objects": [ind]})

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(100):
            if server.started:
                break
            time.sleep(0.05)
        now = [0.0]
        feed = FeedConfig(name="taxii", type="taxii", url=f"http://127.0.0.1:{port}/api1/", collection="c1")
        matcher = IntelMatcher(IntelConfig(feeds=[feed], refresh_secs=60), clock=lambda: now[0])
        out, _ = matcher.match(rows())
        assert out.column("threat.indicator.value").to_pylist()[0] == "198.51.100.7"
        state["ip"] = "192.0.2.1"  # the feed changes; the schedule picks it up
        now[0] = 61.0
        out, _ = matcher.match(rows())
        assert out.column("threat.indicator.value").to_pylist()[0] is None
        assert out.column("threat.indicator.value").to_pylist()[6] == "192.0.2.1"
    finally:
        server.should_exit = True
        thread.join(5)


def test_broken_feed_keeps_detection_running(tmp_path: Path) -> None:
    matcher = IntelMatcher(
        IntelConfig(feeds=[FeedConfig(name="gone", type="text", path=str(tmp_path / "nope"))])
    )
    assert "gone" in matcher.errors
    _, alerts = matcher.match(batch_of([{"verb": "get"}]))
    assert alerts == []
