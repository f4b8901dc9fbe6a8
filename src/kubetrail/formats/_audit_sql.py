"""The DuckDB SQL behind the audit parser (kept apart so audit.py stays readable).

Every line is parsed once by ``from_json`` into a fixed structure (the variable objects typed
``JSON`` so they come back as raw text) and audit.py takes the fields out with Arrow kernels: small
statements, because DuckDB's planning time, not its parsing, dominated small webhook bodies.

GKE (Cloud Audit Log) mapping, as faithful as the record allows:
  methodName ``io.k8s.<group>.<version>.<resource>[.<subresource>].<verb>`` -> verb (last part), and
  resource / subresource / group / version when resourceName lacks them;
  resourceName ``<group>/<version>[/namespaces/<ns>]/<resource>[/<name>[/<subresource>]]`` ->
  objectRef (group ``core`` -> ``""``); a resourceName starting with ``/`` is a non-resource URL ->
  requestURI; authenticationInfo.principalEmail -> user.username; requestMetadata.callerIp ->
  sourceIPs; callerSuppliedUserAgent -> userAgent; status.code (google.rpc.Code) -> the HTTP code
  the API server would have sent (0 -> 200, 7 -> 403, 5 -> 404, 6/10 -> 409, 16 -> 401, ...; no
  status -> null); authorizationInfo[].granted -> decision (any false -> forbid, else allow);
  labels (GKE puts the audit annotations there) -> annotations, else a synthesized decision
  annotation; operation.id -> auditID; operation.last -> stage ResponseComplete; request/response ->
  requestObject/responseObject; timestamp -> stageTimestamp. Level is not recorded by GKE (null).
"""

from __future__ import annotations

import json

__all__ = ["AZURE_SQL", "EVENTS_SQL", "EVENTS_SQL_GUARDED", "GCP_SQL", "PARAMS", "VALID_SQL", "params_for"]

_EVENT = {
    "kind": "VARCHAR",
    "apiVersion": "VARCHAR",
    "level": "VARCHAR",
    "auditID": "VARCHAR",
    "stage": "VARCHAR",
    "requestURI": "VARCHAR",
    "verb": "VARCHAR",
    "user": {"username": "VARCHAR", "uid": "VARCHAR", "groups": ["VARCHAR"], "extra": "JSON"},
    "impersonatedUser": "JSON",
    "sourceIPs": ["VARCHAR"],
    "userAgent": "VARCHAR",
    "objectRef": {
        "resource": "VARCHAR",
        "subresource": "VARCHAR",
        "namespace": "VARCHAR",
        "name": "VARCHAR",
        "apiGroup": "VARCHAR",
        "apiVersion": "VARCHAR",
        "uid": "VARCHAR",
        "resourceVersion": "VARCHAR",
    },
    "responseStatus": {"code": "VARCHAR", "reason": "VARCHAR", "status": "VARCHAR", "message": "VARCHAR"},
    "requestObject": "JSON",
    "responseObject": "JSON",
    "requestReceivedTimestamp": "VARCHAR",
    "stageTimestamp": "VARCHAR",
    "annotations": "JSON",
}
# The top level also carries the envelope keys the sniffing needs.
_LINE = {
    **_EVENT,
    "items": "JSON[]",
    "records": "JSON[]",
    "protoPayload": "JSON",
    "properties": {"log": "VARCHAR"},
    "category": "VARCHAR",
    "operationName": "VARCHAR",
}
_GCP = {
    "protoPayload": {
        "serviceName": "VARCHAR",
        "methodName": "VARCHAR",
        "resourceName": "VARCHAR",
        "requestURI": "VARCHAR",
        "authenticationInfo": {"principalEmail": "VARCHAR"},
        "requestMetadata": "JSON",
        "status": "JSON",
        "authorizationInfo": [{"granted": "BOOLEAN"}],
        "request": "JSON",
        "response": "JSON",
    },
    "timestamp": "VARCHAR",
    "receiveTimestamp": "VARCHAR",
    "operation": {"id": "VARCHAR", "last": "BOOLEAN"},
    "labels": "JSON",
}
_SHORT_GROUPS = {
    "core": "",
    "rbac": "rbac.authorization.k8s.io",
    "authorization.rbac": "rbac.authorization.k8s.io",  # what GKE actually writes
    "networking": "networking.k8s.io",
    "admissionregistration": "admissionregistration.k8s.io",
    "certificates": "certificates.k8s.io",
    "storage": "storage.k8s.io",
    "apiextensions": "apiextensions.k8s.io",
    "apiregistration": "apiregistration.k8s.io",
    "coordination": "coordination.k8s.io",
    "discovery": "discovery.k8s.io",
    "scheduling": "scheduling.k8s.io",
    "node": "node.k8s.io",
    "events": "events.k8s.io",
    "authentication": "authentication.k8s.io",
    "authorization": "authorization.k8s.io",
    "flowcontrol": "flowcontrol.apiserver.k8s.io",
    "resource": "resource.k8s.io",
}
# google.rpc.Code -> HTTP status (google/rpc/code.proto)
_RPC_HTTP = {0: 200, 1: 499, 2: 500, 3: 400, 4: 504, 5: 404, 6: 409, 7: 403, 8: 429, 9: 400, 10: 409}
_RPC_HTTP |= {11: 400, 12: 501, 13: 500, 14: 503, 15: 500, 16: 401}

PARAMS = {
    "event": json.dumps(_EVENT),
    "line": json.dumps(_LINE),
    "gcp": json.dumps(_GCP),
    "method": r"^io\.k8s\.(.+)\.(v[0-9]+(?:(?:alpha|beta)[0-9]+)?)\.([^.]+)(?:\.([^.]+))?\.([^.]+)$",
    "resname": r"^([^/]+)/([^/]+)/(?:namespaces/([^/]+)/)?([^/]+)(?:/([^/]+))?(?:/([^/]+))?$",
}
_GROUP = "coalesce(NULLIF(r.g, ''), NULLIF(m.g, ''))"
_GROUP_CASE = f"CASE {_GROUP} " + " ".join(f"WHEN '{k}' THEN '{v}'" for k, v in _SHORT_GROUPS.items())
_GROUP_CASE += f" ELSE {_GROUP} END"
_RPC_CASE = "CASE rpc " + " ".join(f"WHEN {k} THEN {v}" for k, v in _RPC_HTTP.items()) + " ELSE 500 END"

_DECISION = """e.annotations->>'$."authorization.k8s.io/decision"'"""

# One parse per line into a fixed struct (``$line``); audit.py takes the fields out with Arrow and
# assembles ``attributes`` there too (in SQL it cost a third of the statement).
EVENTS_SQL = f"""SELECT li, item, env, e, {_DECISION} AS decision
FROM (SELECT li, item, env, from_json(line, $line) AS e FROM t)"""
# Items of EventLists, AKS logs: some may be no JSON object; those come back with e = NULL.
EVENTS_SQL_GUARDED = f"""SELECT li, item, env, e, {_DECISION} AS decision
FROM (SELECT li, item, env, CASE WHEN json_valid(line) AND left(ltrim(line), 1) = '{{'
                                 THEN from_json(line, $line) END AS e FROM t)"""
VALID_SQL = "SELECT json_valid(line) AND left(ltrim(line), 1) = '{' AS ok FROM t"
# AKS diagnostic records (one per line or one per ``records`` item): the Event is a JSON string.
AZURE_SQL = """SELECT li, item, line->>'$.properties.log' AS log, line->>'$.operationName' AS operation,
  '"azure":' || json_merge_patch(line, '{"properties":{"log":null}}')::VARCHAR AS env FROM t"""

GCP_SQL = """WITH gcp AS (SELECT li, line, from_json(line, $gcp) AS p FROM t),
gcp_cols AS (
  SELECT li, line, p,
    regexp_extract(p.protoPayload.methodName, $method, ['g', 'v', 'res', 'sub', 'verb']) AS m,
    regexp_extract(p.protoPayload.resourceName, $resname, ['g', 'v', 'ns', 'res', 'name', 'sub']) AS r,
    list_transform(p.protoPayload.authorizationInfo, lambda a: a.granted) AS granted,
    p.protoPayload.status IS NOT NULL AS has_status,
    TRY_CAST(coalesce(p.protoPayload.status->>'$.code', '0') AS INTEGER) AS rpc
  FROM gcp)
  SELECT li, NULL::BIGINT AS item,
    p.operation.id AS auditID, NULL AS level,
    CASE WHEN p.operation.last THEN 'ResponseComplete' END AS stage,
    NULLIF(m.verb, '') AS verb,
    coalesce(p.protoPayload.requestURI,
             CASE WHEN starts_with(p.protoPayload.resourceName, '/') THEN p.protoPayload.resourceName END)
      AS requestURI,
    p.protoPayload.authenticationInfo.principalEmail AS username, NULL AS uid, NULL::VARCHAR[] AS groups,
    NULL AS impersonated,
    CASE WHEN coalesce(p.protoPayload.requestMetadata->>'$.callerIp',
                       p.protoPayload.requestMetadata->>'$.callerIP') IS NOT NULL
         THEN [coalesce(p.protoPayload.requestMetadata->>'$.callerIp',
                        p.protoPayload.requestMetadata->>'$.callerIP')] END AS sourceIPs,
    p.protoPayload.requestMetadata->>'$.callerSuppliedUserAgent' AS userAgent,
    coalesce(NULLIF(r.res, ''), NULLIF(m.res, '')) AS resource,
    coalesce(NULLIF(r.sub, ''), NULLIF(m.sub, '')) AS subresource,
    NULLIF(r.ns, '') AS namespace, NULLIF(r.name, '') AS name,
    @@GROUP_CASE@@ AS apiGroup,
    coalesce(NULLIF(r.v, ''), NULLIF(m.v, '')) AS apiVersion,
    CASE WHEN has_status THEN (@@RPC_CASE@@)::VARCHAR END AS code_text,
    p.protoPayload.status->>'$.message' AS reason,
    coalesce(p.labels::VARCHAR, CASE WHEN decision IS NOT NULL
             THEN json_object('authorization.k8s.io/decision', decision)::VARCHAR END) AS annotations,
    p.protoPayload.request::VARCHAR AS requestObject, p.protoPayload.response::VARCHAR AS responseObject,
    NULL AS rrt_text, coalesce(p.timestamp, p.receiveTimestamp) AS st_text,
    decision,
    '{"gcp":' || json_merge_patch(line, '{"protoPayload":{"request":null,"response":null}}')::VARCHAR
      || '}' AS attributes,
    p.protoPayload.methodName AS method,
    CASE WHEN p.protoPayload.serviceName IS DISTINCT FROM 'k8s.io'
              AND NOT starts_with(coalesce(p.protoPayload.methodName, ''), 'io.k8s.') THEN 'not_k8s_audit' END
      AS problem
  FROM (SELECT *, CASE WHEN list_contains(granted, false) THEN 'forbid'
                       WHEN len(granted) > 0 THEN 'allow' END AS decision FROM gcp_cols)
"""
GCP_SQL = GCP_SQL.replace("@@GROUP_CASE@@", _GROUP_CASE).replace("@@RPC_CASE@@", _RPC_CASE)


def params_for(sql: str) -> dict[str, str]:
    """The named parameters a statement uses (DuckDB rejects extra ones)."""
    return {name: value for name, value in PARAMS.items() if f"${name}" in sql}
