"""Discovery: which files to tail, found by glob rescans plus inotify.

inotify (directory watches on every level of each glob) says *when* to look: a created or moved file
triggers a rescan right away and a write wakes the tailer, so latency is milliseconds. The periodic
rescan (``rescan_interval_secs``) is the safety net for what inotify cannot promise (queue overflow,
watch limits, filesystems without events). Rotated siblings of every glob are matched too
(``0.log.<ts>``, ``audit-<ts>.log``, ``syslog.1``) so a file rotated while the agent was down is still
drained from its checkpoint; compressed ones are skipped.
"""

from __future__ import annotations

import glob
import logging
import os
import re

__all__ = ["Discovery", "live_name", "rotated_patterns"]

log = logging.getLogger("kubetrail.agent.discovery")

_KUBELET_ROTATED = re.compile(r"^(.*\.log)\.[^/]+$")
_APISERVER_ROTATED = re.compile(r"^(.*)-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}(?:\.\d+)?\.log$")
_NUMBERED = re.compile(r"^(.*)\.\d+$")
_SKIP = (".gz", ".bz2", ".xz", ".zst", ".zip", ".lz4", ".tmp", ".swp")


def live_name(path: str) -> str:
    """The name a rotated file had while it was live (pod coordinates are parsed from it)."""
    for pattern, suffix in ((_KUBELET_ROTATED, ""), (_APISERVER_ROTATED, ".log"), (_NUMBERED, "")):
        m = pattern.match(path)
        if m:
            return m.group(1) + suffix
    return path


def rotated_patterns(pattern: str) -> list[str]:
    """Globs for the rotated siblings of files matched by ``pattern``."""
    out = [pattern + ".*"]
    if pattern.endswith(".log"):
        out.append(pattern[: -len(".log")] + "-*.log")
    return out


class Discovery:
    """Globs per source; ``scan`` returns ``{path: source}``; inotify marks when to look again."""

    def __init__(self, sources: dict[str, list[str]], use_inotify: bool = True) -> None:
        self.sources = sources
        self._inotify = None
        self._watched: dict[str, int] = {}
        self.structure_changed = True
        self.data_changed = True
        if use_inotify:
            try:
                from inotify_simple import INotify

                self._inotify = INotify()
            except (ImportError, OSError) as exc:
                log.warning("inotify unavailable, polling only: %s", exc)

    def fileno(self) -> int | None:
        return None if self._inotify is None else self._inotify.fileno()

    def scan(self) -> dict[str, str]:
        found: dict[str, str] = {}
        for source, patterns in self.sources.items():
            for pattern in patterns:
                for live in (pattern, *rotated_patterns(pattern)):
                    for path in glob.glob(live):
                        if path.endswith(_SKIP) or path in found:
                            continue
                        found[path] = source
                self._watch_levels(pattern)
        self.structure_changed = False
        return found

    def _watch_levels(self, pattern: str) -> None:
        """Watch every directory a glob can walk through (new pod dirs, container dirs, files)."""
        if self._inotify is None:
            return
        parts = pattern.split("/")
        for depth in range(2, len(parts)):
            for directory in glob.glob("/".join(parts[:depth]) or "/"):
                if directory not in self._watched and os.path.isdir(directory):
                    self._add_watch(directory)

    def _add_watch(self, directory: str) -> None:
        from inotify_simple import flags

        assert self._inotify is not None
        mask = (
            flags.CREATE | flags.MOVED_TO | flags.MOVED_FROM | flags.DELETE | flags.MODIFY | flags.DELETE_SELF
        )
        try:
            self._watched[directory] = self._inotify.add_watch(directory, mask)
        except OSError as exc:  # watch limit, permission: the rescan still finds files
            log.warning("cannot watch %s: %s", directory, exc, extra={"path": directory})
            self._watched[directory] = -1

    def on_events(self) -> None:
        """Drain the inotify queue (called when its descriptor is readable)."""
        if self._inotify is None:
            return
        from inotify_simple import flags

        try:
            events = self._inotify.read(timeout=0)
        except OSError:
            return
        structural = flags.CREATE | flags.MOVED_TO | flags.MOVED_FROM | flags.DELETE | flags.DELETE_SELF
        by_wd = {wd: d for d, wd in self._watched.items()}
        for event in events:
            if event.mask & (flags.Q_OVERFLOW | structural):
                self.structure_changed = True
            if event.mask & flags.IGNORED:  # the directory is gone (pod deleted): forget its watch
                gone = by_wd.get(event.wd)
                if gone is not None and self._watched.get(gone) == event.wd:
                    del self._watched[gone]
            self.data_changed = True

    def close(self) -> None:
        if self._inotify is not None:
            self._inotify.close()
