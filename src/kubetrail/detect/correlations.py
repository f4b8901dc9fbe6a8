"""Sigma correlation rules over a stream of batches, with state carried from batch to batch.

A correlation reads the matches of the rules it references (their hits are few compared with the
events: the expensive part, evaluating conditions, already ran vectorized in the engine). For every
hit the engine extracts, with one DuckDB query over the matched rows, the timestamp, the event id,
the group-by values and (value_count) the counted field. State is kept per correlation and per
group key, trimmed to the time window on every update, and bounded: at most ``max_keys`` keys (least
recently seen are dropped first, and counted) and ``max_hits_per_key`` hits per key.

Semantics, for hits processed in timestamp order:

* ``event_count``: fires when the hits of the key inside the window satisfy the condition
  (``gte``/``gt``/``eq``); the key's window then restarts, so a burst raises one alert.
* ``value_count``: the same over the number of distinct values of the condition's ``field``.
* ``temporal``: fires when every referenced rule has a hit for the key inside the window.
* ``temporal_ordered``: fires when the referenced rules hit in their listed order inside the window.

``lt``/``lte`` conditions need the window to close before they can be decided; they are rejected at
load time for streaming (history hunts handle them with the same state over sorted hits).
The same :class:`CorrelationState` runs over history (``kubetrail hunt``) on hits sorted by time.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kubetrail.detect.rules import CompiledCorrelation

__all__ = ["CorrelationAlert", "CorrelationState", "Hit"]


@dataclass(frozen=True)
class Hit:
    """One match of a referenced rule."""

    ts_ns: int
    rule_id: str
    event_id: str
    key: tuple[str | None, ...]
    value: str | None = None


@dataclass
class CorrelationAlert:
    correlation: CompiledCorrelation
    key: dict[str, str | None]
    event_ids: list[str]
    first_ns: int
    last_ns: int
    count: int


def _satisfied(op: str, have: int, want: int) -> bool:
    return {
        "gte": have >= want,
        "gt": have > want,
        "eq": have == want,
        "neq": have != want,
        "lte": have <= want,
        "lt": have < want,
    }[op]


@dataclass
class _KeyState:
    hits: deque[Hit] = field(default_factory=deque)
    values: dict[str, int] = field(default_factory=dict)  # value_count: value -> last ts
    last: dict[str, Hit] = field(default_factory=dict)  # temporal: rule -> last hit
    chain: list[tuple[int, list[str]] | None] = field(default_factory=list)  # temporal_ordered


class CorrelationState:
    """Streaming state of one correlation rule."""

    def __init__(
        self, correlation: CompiledCorrelation, max_keys: int = 100_000, max_hits_per_key: int = 10_000
    ) -> None:
        self.correlation = correlation
        self.window_ns = int(correlation.window_secs * 1e9)
        self.max_keys = max_keys
        self.max_hits_per_key = max_hits_per_key
        self.keys: OrderedDict[tuple[str | None, ...], _KeyState] = OrderedDict()
        self.dropped_keys = 0
        self.required = correlation.count
        if correlation.type.startswith("temporal") and correlation.op == "gte" and correlation.count <= 1:
            self.required = len(correlation.rule_ids)  # Sigma: temporal means "all referenced rules"

    def _state(self, key: tuple[str | None, ...]) -> _KeyState:
        state = self.keys.get(key)
        if state is None:
            state = _KeyState(chain=[None] * len(self.correlation.rule_ids))
            self.keys[key] = state
            while len(self.keys) > self.max_keys:
                self.keys.popitem(last=False)
                self.dropped_keys += 1
        else:
            self.keys.move_to_end(key)
        return state

    def update(self, hits: list[Hit]) -> list[CorrelationAlert]:
        """Feed hits (any order; they are sorted by time here); return the alerts they complete."""
        alerts: list[CorrelationAlert] = []
        if not hits:
            return alerts
        order = np.argsort(
            np.fromiter((h.ts_ns for h in hits), dtype=np.int64, count=len(hits)), kind="stable"
        )
        kind = self.correlation.type
        for i in order:
            hit = hits[int(i)]
            state = self._state(hit.key)
            fired = getattr(self, f"_{kind}")(state, hit)
            if fired is not None:
                alerts.append(fired)
        return alerts

    def _alert(self, hit: Hit, event_ids: list[str], first_ns: int, count: int) -> CorrelationAlert:
        key = dict(zip(self.correlation.group_by, hit.key, strict=False))
        return CorrelationAlert(self.correlation, key, event_ids, first_ns, hit.ts_ns, count)

    def _trim(self, state: _KeyState, now: int) -> None:
        while state.hits and state.hits[0].ts_ns < now - self.window_ns:
            state.hits.popleft()
        while len(state.hits) > self.max_hits_per_key:
            state.hits.popleft()

    def _event_count(self, state: _KeyState, hit: Hit) -> CorrelationAlert | None:
        state.hits.append(hit)
        self._trim(state, hit.ts_ns)
        if self.correlation.op in ("gte", "gt", "eq") and _satisfied(
            self.correlation.op, len(state.hits), self.required
        ):
            hits = list(state.hits)
            state.hits.clear()
            return self._alert(hit, [h.event_id for h in hits], hits[0].ts_ns, len(hits))
        return None

    def _value_count(self, state: _KeyState, hit: Hit) -> CorrelationAlert | None:
        state.hits.append(hit)
        self._trim(state, hit.ts_ns)
        cutoff = hit.ts_ns - self.window_ns
        if hit.value is not None:
            state.values[hit.value] = hit.ts_ns
        state.values = {v: t for v, t in state.values.items() if t >= cutoff}
        if self.correlation.op in ("gte", "gt", "eq") and _satisfied(
            self.correlation.op, len(state.values), self.required
        ):
            hits = list(state.hits)
            count = len(state.values)
            state.hits.clear()
            state.values.clear()
            return self._alert(hit, [h.event_id for h in hits], hits[0].ts_ns, count)
        return None

    def _temporal(self, state: _KeyState, hit: Hit) -> CorrelationAlert | None:
        state.last[hit.rule_id] = hit
        cutoff = hit.ts_ns - self.window_ns
        state.last = {r: h for r, h in state.last.items() if h.ts_ns >= cutoff}
        if len(state.last) >= self.required:
            seen = sorted(state.last.values(), key=lambda h: h.ts_ns)
            state.last.clear()
            return self._alert(hit, [h.event_id for h in seen], seen[0].ts_ns, len(seen))
        return None

    def _temporal_ordered(self, state: _KeyState, hit: Hit) -> CorrelationAlert | None:
        rules = self.correlation.rule_ids
        fired: CorrelationAlert | None = None
        # walk steps from the last to the first so one hit cannot advance two steps at once
        for step in range(len(rules) - 1, -1, -1):
            if rules[step] != hit.rule_id:
                continue
            if step == 0:
                state.chain[0] = (hit.ts_ns, [hit.event_id])
                continue
            prev = state.chain[step - 1]
            if prev is None or hit.ts_ns - prev[0] > self.window_ns:
                continue
            state.chain[step] = (prev[0], [*prev[1], hit.event_id])
            if step == len(rules) - 1:
                start, ids = state.chain[step]  # type: ignore[misc]
                state.chain = [None] * len(rules)
                fired = self._alert(hit, ids, start, len(ids))
        return fired

    def snapshot(self) -> dict[str, Any]:
        """Size figures for metrics."""
        return {"keys": len(self.keys), "dropped_keys": self.dropped_keys}
