from __future__ import annotations

from pathlib import Path

from kubetrail.chunk import FileIdentity, Origin, file_chunks


def test_file_chunks_are_whole_lines_at_their_offsets(tmp_path: Path) -> None:
    lines = [f"line {i} ".encode() * (i % 7 + 1) + b"\n" for i in range(500)]
    path = tmp_path / "f.log"
    path.write_bytes(b"".join(lines) + b"partial, no newline")
    origin = Origin(node="n1", source="file", path="/var/log/f.log", file=FileIdentity(1, 2, "ab"))
    chunks = list(file_chunks(path, origin, chunk_bytes=100))
    assert b"".join(c.data for c in chunks) == b"".join(lines)
    offset = 0
    for chunk in chunks:
        assert chunk.data.endswith(b"\n") and chunk.origin.offset == offset
        assert chunk.origin.file == origin.file and chunk.origin.node == "n1"
        offset += len(chunk.data)
