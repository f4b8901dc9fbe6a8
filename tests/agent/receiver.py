"""A minimal real receiver of the agent protocol, run as its own process by the agent tests.

It decodes with the project's ``agent_protocol.decode_request`` and appends every chunk (stream key,
offset, bytes) to a record file, fsynced *before* answering 200, like the server's WAL. It can be told
(by a control file) to answer 429/503 with ``Retry-After``. Tests stop and restart it to simulate an
unreachable server. ``--discard`` only counts bytes (benchmark).

    python tests/agent/receiver.py --port 8700 --out rec.bin [--discard] [--control ctl.json]
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack


def build_app(out: Path | None, control: Path | None) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from kubetrail.errors import ProtocolError
    from kubetrail.receivers.agent_protocol import PATH, decode_request

    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644) if out is not None else None
    state = {"requests": 0}

    async def chunks(request: Request) -> JSONResponse:
        state["requests"] += 1
        if control is not None and control.exists():
            ctl = json.loads(control.read_text() or "{}")
            every = int(ctl.get("busy_every", 0))
            if every and state["requests"] % every == 0:
                return JSONResponse(
                    {"error": {"code": "KT-BUSY", "message": "busy"}},
                    status_code=int(ctl.get("busy_status", 429)),
                    headers={"Retry-After": str(ctl.get("retry_after", 0))},
                )
        try:
            body = await request.body()
        except ClientDisconnect:  # the agent was kill -9'ed mid-request
            return JSONResponse({}, status_code=499)
        try:
            req = decode_request(body, request.headers.get("content-encoding", "identity"))
        except ProtocolError as exc:
            return JSONResponse({"error": {"code": exc.code, "message": str(exc)}}, status_code=400)
        if fd is not None:
            records = [
                msgpack.packb(
                    {
                        "key": c.origin.stream_key(),
                        "source": c.origin.source,
                        "path": c.origin.path,
                        "offset": c.origin.offset,
                        "meta": c.origin.metadata,
                        "batch": request.headers.get("x-kubetrail-batch-id"),
                        "data": c.data,
                    }
                )
                for c in req.chunks
            ]
            os.write(fd, b"".join(records))
            os.fsync(fd)
        return JSONResponse({"accepted_chunks": len(req.chunks)})

    return Starlette(routes=[Route(PATH, chunks, methods=["POST"])])


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    if not path.exists():
        return
    with path.open("rb") as fh:
        yield from msgpack.Unpacker(fh, raw=False, max_buffer_size=1 << 30)


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--control", type=Path)
    parser.add_argument("--discard", action="store_true")
    args = parser.parse_args()
    app = build_app(None if args.discard else args.out, args.control)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
