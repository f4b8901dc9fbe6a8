"""CRI container logs (containerd, CRI-O): ``<RFC3339Nano> <stdout|stderr> <P|F> <message>``.

The kubelet's runtime writes one record per line; a line longer than 16 KiB is split into ``P``
(partial) pieces closed by an ``F`` (full) piece. Parsing is positional and vectorized: one
``find_substring`` kernel finds the space after the timestamp of every line, then numpy gathers
check the fixed-width ``stdout``/``stderr`` and tag fields straight from the chunk's buffer. A line
that does not fit is kept whole as the message, flagged ``bad_format``, with the receive time.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from kubetrail.formats.base import register_parser
from kubetrail.formats.container import ContainerParser
from kubetrail.formats.kernels import Flags, slice_ranges, to_np
from kubetrail.formats.lines import LineBlock
from kubetrail.formats.partials import UNKNOWN_STREAM, Pieces
from kubetrail.formats.timeparse import parse_rfc3339

__all__ = ["CriParser"]

_MIN_TS = len("2006-01-02T15:04:05Z")
_S, _T, _D, _O, _U, _E, _R = (ord(c) for c in "stdouer")
_SPACE, _P, _F = ord(" "), ord("P"), ord("F")


@register_parser("cri")
class CriParser(ContainerParser):
    """containerd / CRI-O log files under ``/var/log/pods``."""

    def decode_block(self, block: LineBlock, fallback_ns: int) -> tuple[Pieces, npt.NDArray[np.bool_]]:
        data = block.data
        starts, ends = block.starts, block.ends
        n = len(block)
        buf = np.frombuffer(data, dtype=np.uint8)
        last = max(len(data) - 1, 0)
        # zero-copy view: value i spans line i plus its newline, enough to find the first space
        bounds = np.append(starts, min(int(ends[-1]) + 1, len(data))).astype(np.int32)
        buffers = [None, pa.py_buffer(bounds.tobytes()), pa.py_buffer(data)]
        view = pa.Array.from_buffers(pa.binary(), n, buffers)
        space = to_np(pc.find_substring(view, " ")).astype(np.int64)
        sp = starts + space

        def at(k: int) -> npt.NDArray[np.uint8]:
            picked: npt.NDArray[np.uint8] = buf[np.minimum(sp + k, last)]
            return picked

        b4 = at(4)
        out = (b4 == _O) & (at(5) == _U) & (at(6) == _T)
        err = (b4 == _E) & (at(5) == _R) & (at(6) == _R)
        tag = at(8)
        after = at(9)
        ok = (
            (space >= _MIN_TS)
            & (sp + 9 <= ends)
            & (at(1) == _S)
            & (at(2) == _T)
            & (at(3) == _D)
            & (out | err)
            & (at(7) == _SPACE)
            & ((tag == _P) | (tag == _F))
            & ((sp + 9 == ends) | (after == _SPACE))
        )
        all_ok = bool(ok.all())
        ts_end = sp if all_ok else np.where(ok, sp, starts)
        ts_raw = slice_ranges(data, starts, ts_end)
        if not all_ok:
            validity = pa.py_buffer(np.packbits(ok, bitorder="little").tobytes())
            ts_raw = pa.Array.from_buffers(pa.binary(), n, [validity, *ts_raw.buffers()[1:]])
        ts, bad_ts = parse_rfc3339(ts_raw, fallback_ns)
        msg_start = np.minimum(sp + 10, ends)
        if not all_ok:
            msg_start = np.where(ok, msg_start, starts)
        stream = np.where(err, 1, 0).astype(np.int8)
        bits = block.bits.copy()
        final = tag == _F
        if not all_ok:
            stream[~ok] = UNKNOWN_STREAM
            final |= ~ok
            bits[~ok] |= np.uint16(Flags.bit("bad_format"))
            bad_ts &= ok
        if bad_ts.any():
            bits[bad_ts] |= np.uint16(Flags.bit("bad_timestamp"))
        message = slice_ranges(data, msg_start, ends)
        return Pieces(message, stream, ts, block.offsets, bits), final
