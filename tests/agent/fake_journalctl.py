#!/usr/bin/env python3
"""Stands in for ``journalctl -o json --follow [--after-cursor C]``: this container has no systemd.

Reads ``$KT_FAKE_JOURNAL`` (JSON lines with ``__CURSOR`` = ``s=fake;i=<hex n>``, written by the test's
writer), prints every entry after the cursor (all of them without one), then follows the file. Exits on
a broken pipe, like journalctl.
"""

import os
import sys
import time


def main() -> None:
    args = sys.argv[1:]
    after = 0
    if "--after-cursor" in args:
        cursor = args[args.index("--after-cursor") + 1]
        after = int(cursor.rsplit("i=", 1)[1], 16)
    path = os.environ["KT_FAKE_JOURNAL"]
    while not os.path.exists(path):
        time.sleep(0.05)
    n = 0
    partial = b""
    out = sys.stdout.buffer
    with open(path, "rb") as fh:
        while True:
            block = fh.read(65536)
            if not block:
                out.flush()
                time.sleep(0.05)
                continue
            data = partial + block
            lines = data.split(b"\n")
            partial = lines.pop()
            emit = []
            for line in lines:
                n += 1
                if n > after:
                    emit.append(line + b"\n")
            if emit:
                out.write(b"".join(emit))


if __name__ == "__main__":
    try:
        main()
    except (BrokenPipeError, KeyboardInterrupt):
        os._exit(0)
