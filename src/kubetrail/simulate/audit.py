"""API server audit events (``audit.k8s.io/v1`` Event JSON lines) under a realistic audit policy: the
event builder shared by the background noise (``noise``) and the attacks (``attacks``), and encoding.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from kubetrail.simulate.timefmt import micro_time

__all__ = [
    "POLICY_YAML",
    "AuditRecord",
    "AuditTemplate",
    "allow",
    "encode_audit",
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
    """An event serialized once with ``%(AID)s``-style slots for what changes per event."""

    text: str

    @classmethod
    def of(cls, rec: AuditRecord) -> AuditTemplate:
        ev = rec.event
        ev["auditID"] = "@@AID@@"
        ev["requestReceivedTimestamp"] = "@@RCV@@"
        ev["stageTimestamp"] = "@@STG@@"
        ev["annotations"]["kubetrail.io/seq"] = "@@SEQ@@"
        text = orjson.dumps(ev).decode().replace("%", "%%")
        return cls(_SLOT_RE.sub(lambda m: f"%({m.group(1)})s", text) + "\n")


_SLOT_RE = re.compile(r"@@(AID|RCV|STG|SEQ|X)@@")


@dataclass
class AuditRecord:
    """One event: a full ``event`` dict (attacks), or a ``template`` plus the per-event values (noise)."""

    ts_ns: int  # stageTimestamp: the order events appear in the log
    event: dict[str, Any]
    tag: str = ""  # attack id for evidence events, "" for background
    template: AuditTemplate | None = None
    latency_ns: int = 0
    audit_id: str = ""
    extra: str = ""  # value of an ``@@X@@`` slot in the template


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


def encode_audit(records: list[AuditRecord], stream: str = "audit", first: int = 0) -> list[str]:
    """JSON lines in ``records`` order, each with its ``kubetrail.io/seq`` annotation."""
    out = []
    for i, rec in enumerate(records, start=first):
        if rec.template is not None:
            values = {
                "AID": rec.audit_id,
                "RCV": micro_time(rec.ts_ns - rec.latency_ns),
                "STG": micro_time(rec.ts_ns),
                "SEQ": f"{stream}:{i}",
                "X": rec.extra,
            }
            out.append(rec.template.text % values)
            continue
        rec.event["annotations"]["kubetrail.io/seq"] = f"{stream}:{i}"
        out.append(orjson.dumps(rec.event).decode() + "\n")
    return out
