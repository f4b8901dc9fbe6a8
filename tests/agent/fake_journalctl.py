#!/usr/bin/env python3
"""Stands in for ``journalctl -o json --follow [--after-cursor C]``: this container has no systemd.

Reads ``$KT_FAKE_JOURNAL`` (``journalctl -o json`` lines, each with a ``__CURSOR``; written by the test's
writer or the simulator's live mode), prints every entry after the one whose cursor is C (all of them
without a cursor), then follows the file. Exits on a broken pipe, like journalctl.
"""

import glob
import json
import os
import sys
import time


def main() -> None:
    args = sys.argv[1:]
    cursor = args[args.index("--after-cursor") + 1] if "--after-cursor" in args else None
    pattern = os.environ["KT_FAKE_JOURNAL"]  # a path or a glob (the simulator's node name is not known)
    while not glob.glob(pattern):
        time.sleep(0.05)
    path = sorted(glob.glob(pattern))[0]
    emitting = cursor is None
    partial = b""
    out = sys.stdout.buffer
    with open(path, "rb") as fh:
        while True:
            block = fh.read(65536)
            if not block:
                out.flush()
                time.sleep(0.05)
                continue
            lines = (partial + block).split(b"\n")
            partial = lines.pop()
            emit = []
            for line in lines:
                if emitting:
                    emit.append(line + b"\n")
                elif json.loads(line).get("__CURSOR") == cursor:
                    emitting = True
            if emit:
                out.write(b"".join(emit))


if __name__ == "__main__":
    try:
        main()
    except (BrokenPipeError, KeyboardInterrupt):
        os._exit(0)
