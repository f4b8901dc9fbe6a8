"""Raw chunks and their origin: what the agent and the receivers hand to the parsers.

A chunk is bytes plus where they came from. For files the origin names the node, the path, the file
identity (device, inode, fingerprint of the first bytes) and the byte offset of the chunk's first
byte, so every line has a deterministic ``event.id`` = hash(node, identity) + offset.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

__all__ = ["Chunk", "FileIdentity", "Origin", "file_chunks"]


@dataclass(frozen=True, slots=True)
class FileIdentity:
    dev: int
    inode: int
    fingerprint: str  # hex digest of the file's first bytes; tells inode reuse apart

    def key(self) -> str:
        return f"{self.dev}:{self.inode}:{self.fingerprint}"


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a chunk came from.

    ``source`` picks the default parser: ``container`` (CRI / docker files under /var/log/pods),
    ``audit`` (kube-apiserver audit log), ``journald`` (journalctl -o json), ``klog``, ``syslog``,
    ``file`` (plain node log file). ``format`` overrides the choice. ``metadata`` carries Kubernetes
    metadata the agent attached (labels, owner, image, ...), keyed by schema column name.
    """

    node: str
    source: str
    path: str | None = None
    file: FileIdentity | None = None
    offset: int = 0
    format: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    receiver: str | None = None
    batch_id: str | None = None

    def stream_key(self) -> str:
        """Identity of the byte stream this chunk continues (the parser's state key)."""
        if self.file is not None:
            return f"{self.node}|{self.file.key()}"
        return f"{self.node}|{self.receiver}|{self.path or self.source}"

    def id_prefix(self) -> str:
        # Imported here so the node agent, which never computes ids, does not load pyarrow (RSS budget).
        from kubetrail.schema import event_id_prefix

        if self.file is not None:
            return event_id_prefix(self.node, self.file.key())
        return event_id_prefix(self.node, self.receiver or "", self.batch_id or "", self.path or "")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Origin:
        data = dict(data)
        file = data.pop("file", None)
        return cls(file=FileIdentity(**file) if file else None, **data)


@dataclass(frozen=True, slots=True)
class Chunk:
    origin: Origin
    data: bytes


def file_chunks(path: Path, origin: Origin, chunk_bytes: int = 1 << 20) -> Iterator[Chunk]:
    """A whole file as chunks of complete lines, each with ``origin`` at its first byte's offset.

    How a file reaches the parsers without the agent (benchmarks, batch imports); a last line
    without its newline is left out, as the agent leaves it until the newline arrives.
    """
    with path.open("rb") as fh:
        offset, carry = 0, b""
        while data := fh.read(chunk_bytes):
            data = carry + data
            cut = data.rfind(b"\n") + 1
            carry = data[cut:]
            if cut:
                yield Chunk(replace(origin, offset=offset), data[:cut])
                offset += cut
