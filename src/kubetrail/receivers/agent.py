"""``agent``: the kubetrail agent's endpoint (``POST /api/v1/agent/chunks``, see ``agent_protocol``).

The body is validated (decompressed within limits, msgpack shape checked) before anything is
acknowledged, then written to the WAL *as received* — still compressed — and acknowledged with
``{"accepted_chunks": n}`` after the fsync. The pipeline reuses the decoded chunks in memory and
decodes the WAL copy again only on replay. Chunk origins give every line a deterministic event id,
so a resend after a lost response stores nothing twice.

mTLS: set ``tls.client_auth: required`` with the CA that signed the agents' client certificates;
tokens: every request needs a bearer token with the ``agent`` role when ``server.tokens_file`` is set.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kubetrail.chunk import Chunk
from kubetrail.components import receivers
from kubetrail.errors import ProtocolError
from kubetrail.receivers._context import ListenerConfig
from kubetrail.receivers._http import HttpReceiver, bearer_token, read_body
from kubetrail.receivers.agent_protocol import CONTENT_TYPE, PATH, AgentRequest, decode_request
from kubetrail.server.pipeline import register_codec
from kubetrail.server.wal import WalRecord

__all__ = ["AgentConfig", "AgentReceiver"]


class AgentConfig(ListenerConfig):
    """Options of ``agent``."""

    listen: str = Field("127.0.0.1:9443", description="Address of the agent endpoint.")
    max_chunks_per_request: int = Field(100_000, gt=0, description="Most chunks one request may carry.")


@register_codec("agent")
def decode_agent_record(record: WalRecord, hint: Any) -> list[Chunk]:
    """WAL codec ``agent+<content-encoding>``: the request body as the agent sent it."""
    if isinstance(hint, AgentRequest):
        return hint.chunks
    encoding = record.codec.partition("+")[2] or "identity"
    return decode_request(record.data, encoding, max_decompressed_bytes=1 << 34).chunks


@receivers.register("agent")
class AgentReceiver(HttpReceiver[AgentConfig]):
    Config = AgentConfig
    role = "agent"

    def routes(self) -> list[Route]:
        return [Route(PATH, self.guarded(self.post_chunks), methods=["POST"])]

    async def post_chunks(self, request: Request) -> Response:
        assert self.ctx is not None
        identity = self.ctx.authenticate(bearer_token(request), self.role)
        self.ctx.check_rate(self.client_key(request, identity))
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != CONTENT_TYPE:
            raise ProtocolError(f"Content-Type must be {CONTENT_TYPE}", got=ctype[:80])
        encoding = request.headers.get("content-encoding", "identity").strip().lower() or "identity"
        limits = self.limits
        body = await read_body(request, limits.max_body_bytes, limits.read_timeout_secs)
        decoded = decode_request(
            body,
            encoding,
            max_decompressed_bytes=limits.max_decompressed_bytes,
            max_chunks=self.config.max_chunks_per_request,
        )
        # the decoded chunks stay in memory until stored: the queue budget counts them too
        await self.ctx.submit(
            self.name, f"agent+{encoding}", body, decoded, cost=len(body) + decoded.data_bytes
        )
        return JSONResponse({"accepted_chunks": len(decoded.chunks)})
