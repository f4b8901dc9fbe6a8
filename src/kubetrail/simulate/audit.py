"""API server audit events (``audit.k8s.io/v1`` Event JSON lines) under a realistic audit policy: the
event builder shared by the background noise (``noise``) and the attacks (``attacks``), and encoding.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from kubetrail.simulate.arrowtext import join, rfc3339_micro
from kubetrail.simulate.timefmt import micro_time

if TYPE_CHECKING:
    from kubetrail.simulate.noise import NoiseEvents

__all__ = [
    "POLICY_YAML",
    "AuditRecord",
    "AuditTemplate",
    "allow",
    "encode_audit",
    "encode_bulk",
    "level_for",
    "make_event",
    "sa_user",
]

# The policy the simulated API server runs with (written to the control-plane node for reference).
POLICY_YAML = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
    resources:
      - group: ""
        resources: ["secrets", "configmaps", "serviceaccounts/token"]
      - group: "authentication.k8s.io"
        resources: ["tokenreviews"]
  - level: Metadata
    verbs: ["get", "list", "watch"]
  - level: RequestResponse
    resources:
      - group: ""
        resources: ["pods", "pods/exec", "pods/attach", "pods/portforward", "pods/ephemeralcontainers",
                    "pods/binding", "pods/status"]
      - group: "rbac.authorization.k8s.io"
  - level: Metadata
    resources:
      - group: "coordination.k8s.io"
        resources: ["leases"]
  - level: Request
"""

_METADATA_RESOURCES = {"secrets", "configmaps", "serviceaccounts/token", "tokenreviews"}
_READS = {"get", "list", "watch"}


def level_for(verb: str, resource: str, group: str) -> str:
    """The level ``POLICY_YAML`` gives a request.

    ``resource`` may carry a subresource (``pods/exec``); "" means a non-resource URL such as ``/livez``.
    """
    if resource in _METADATA_RESOURCES:
        return "Metadata"
    if verb in _READS or not resource:
        return "Metadata"
    if (group == "" and resource.split("/")[0] == "pods") or group == "rbac.authorization.k8s.io":
        return "RequestResponse"
    if resource == "leases":
        return "Metadata"
    return "Request"


@dataclass
class AuditTemplate:
    """An event serialized once; ``slots`` (AID, RCV, STG, SEQ, X) go between the literal ``parts``."""

    parts: list[str]
    slots: list[str]

    @classmethod
    def of(cls, rec: AuditRecord) -> AuditTemplate:
        ev = rec.event
        ev["auditID"] = "@@AID@@"
        ev["requestReceivedTimestamp"] = "@@RCV@@"
        ev["stageTimestamp"] = "@@STG@@"
        ev["annotations"]["kubetrail.io/seq"] = "@@SEQ@@"
        pieces = _SLOT_RE.split(orjson.dumps(ev).decode() + "\n")
        return cls(pieces[0::2], pieces[1::2])


_SLOT_RE = re.compile(r"@@(AID|RCV|STG|SEQ|X)@@")


@dataclass
class AuditRecord:
    """One event as a dict (attacks, templates); ``tag`` is the attack id for evidence events."""

    ts_ns: int  # stageTimestamp: the order events appear in the log
    event: dict[str, Any]
    tag: str = ""


def sa_user(ns: str, name: str, uid: str, node: str = "", pod: str = "", pod_uid: str = "") -> dict[str, Any]:
    user: dict[str, Any] = {
        "username": f"system:serviceaccount:{ns}:{name}",
        "uid": uid,
        "groups": ["system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"],
    }
    if node:
        user["extra"] = {
            "authentication.kubernetes.io/credential-id": [f"JTI={uid[::-1]}"],
            "authentication.kubernetes.io/node-name": [node],
            "authentication.kubernetes.io/pod-name": [pod],
            "authentication.kubernetes.io/pod-uid": [pod_uid],
        }
    return user


def _uri(verb: str, resource: str, group: str, version: str, ns: str, name: str, sub: str) -> str:
    base = "/api/v1" if group == "" else f"/apis/{group}/{version}"
    path = base + (f"/namespaces/{ns}" if ns else "") + f"/{resource}"
    if name:
        path += f"/{name}"
    if sub:
        path += f"/{sub}"
    if verb == "watch":
        path += "?allowWatchBookmarks=true&resourceVersion=0&timeout=7m12s&watch=true"
    elif verb == "list":
        path += "?limit=500&resourceVersion=0"
    return path


def make_event(
    *,
    ts_ns: int,
    audit_id: str,
    verb: str,
    user: dict[str, Any],
    source_ips: list[str],
    user_agent: str,
    resource: str = "",
    group: str = "",
    version: str = "v1",
    namespace: str = "",
    name: str = "",
    subresource: str = "",
    uri: str = "",
    code: int = 200,
    stage: str = "ResponseComplete",
    latency_ns: int = 3_000_000,
    request_object: dict[str, Any] | None = None,
    response_object: dict[str, Any] | None = None,
    annotations: dict[str, str] | None = None,
    level: str | None = None,
    fail_message: str = "",
) -> AuditRecord:
    """One Event with the fields in kube-apiserver's order; the bodies kept are the ones ``level`` allows."""
    full_resource = f"{resource}/{subresource}" if subresource else resource
    level = level or level_for(verb, full_resource, group)
    received, stage_ts = micro_time(ts_ns - latency_ns), micro_time(ts_ns)
    ev: dict[str, Any] = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": level,
        "auditID": audit_id,
        "stage": stage,
        "requestURI": uri or _uri(verb, resource, group, version, namespace, name, subresource),
        "verb": verb,
        "user": user,
        "sourceIPs": source_ips,
        "userAgent": user_agent,
    }
    if resource:
        ref: dict[str, Any] = {"resource": resource}
        if namespace:
            ref["namespace"] = namespace
        if name:
            ref["name"] = name
        if group:
            ref["apiGroup"] = group
        ref["apiVersion"] = version
        if subresource:
            ref["subresource"] = subresource
        ev["objectRef"] = ref
    if code < 400:
        ev["responseStatus"] = {"metadata": {}, "code": code}
    else:
        reason = {401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 409: "AlreadyExists"}.get(code, "")
        ev["responseStatus"] = {
            "metadata": {},
            "status": "Failure",
            "message": fail_message or reason,
            "reason": reason,
            "code": code,
        }
    if level in ("Request", "RequestResponse") and request_object is not None:
        ev["requestObject"] = request_object
    if level == "RequestResponse" and response_object is not None:
        ev["responseObject"] = response_object
    ev["requestReceivedTimestamp"] = received
    ev["stageTimestamp"] = stage_ts
    ev["annotations"] = dict(annotations or {})
    return AuditRecord(ts_ns, ev)


def allow(kind: str, binding: str, role: str, subject: str) -> dict[str, str]:
    return {
        "authorization.k8s.io/decision": "allow",
        "authorization.k8s.io/reason": (
            f'RBAC: allowed by {kind} "{binding}" of ClusterRole "{role}" to {subject}'
        ),
    }


def encode_bulk(
    noise: NoiseEvents, records: list[AuditRecord], stream: str = "audit", first: int = 0
) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """Noise columns and full ``records`` as one time-ordered Arrow array of JSON lines.

    Noise is rendered per template with Arrow kernels (the literal parts joined with the id, time and
    seq columns), records one by one. Returns (lines, their stageTimestamps, final index of each record).
    """
    n_noise, total = len(noise), len(noise) + len(records)
    all_ts = np.concatenate([noise.ts, np.array([r.ts_ns for r in records], dtype=np.int64)])
    order = np.argsort(all_ts, kind="stable")  # final position -> row
    position = np.empty(total, dtype=np.int64)
    position[order] = np.arange(total)
    seq = join(f"{stream}:", pa.array(position[:n_noise] + first).cast(pa.string()))
    # 64-bit offsets: a day of a large cluster's audit log passes the 2 GiB a string array can hold
    cols = {
        "AID": noise.audit_id.cast(pa.large_string()),
        "RCV": rfc3339_micro(noise.ts - noise.latency).cast(pa.large_string()),
        "STG": rfc3339_micro(noise.ts).cast(pa.large_string()),
        "SEQ": seq.cast(pa.large_string()),
        "X": pa.array(noise.extra, type=pa.large_string()),
    }
    pieces: list[pa.Array] = []
    rows: list[np.ndarray] = []
    by_template = np.argsort(noise.template, kind="stable")
    bounds = np.flatnonzero(np.diff(noise.template[by_template])) + 1
    for group in np.split(by_template, bounds) if n_noise else []:
        tpl = noise.templates[int(noise.template[group[0]])]
        idx = pa.array(group)
        args: list[pa.Array | str] = [tpl.parts[0]]
        for slot, part in zip(tpl.slots, tpl.parts[1:], strict=True):
            args += [pc.take(cols[slot], idx), part]
        pieces.append(join(*args))
        rows.append(group)
    if records:
        lines = encode_audit(records, [int(p) + first for p in position[n_noise:]], stream)
        pieces.append(pa.array(lines, pa.large_string()))
        rows.append(np.arange(n_noise, total))
    if not pieces:
        return pa.array([], pa.large_string()), all_ts, position[n_noise:]
    concat = pa.concat_arrays(pieces)
    where = np.empty(total, dtype=np.int64)
    where[np.concatenate(rows)] = np.arange(total)
    return pc.take(concat, pa.array(where[order])), all_ts[order], position[n_noise:]


def encode_audit(records: list[AuditRecord], seq_numbers: list[int], stream: str = "audit") -> list[str]:
    """Full events as JSON lines, each with its ``kubetrail.io/seq`` annotation."""
    out = []
    for rec, n in zip(records, seq_numbers, strict=True):
        rec.event["annotations"]["kubetrail.io/seq"] = f"{stream}:{n}"
        out.append(orjson.dumps(rec.event).decode() + "\n")
    return out
