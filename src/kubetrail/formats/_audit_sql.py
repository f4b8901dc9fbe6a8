"""The DuckDB SQL behind the audit parser (kept apart so audit.py stays readable).

Every line is parsed once by ``from_json`` into a fixed structure; the variable objects are typed
``JSON`` so they come back as raw text. The shapes are then unioned into one set of columns.

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

__all__ = ["AUDIT_SQL", "AUDIT_SQL_GUARDED", "FAST_SQL", "PARAMS", "VALID_SQL", "params_for"]

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


def _native(e: str, shape: str, item: str, envelope: str) -> str:
    """Columns of native Events held in struct ``e`` (``from_json(..., $event)``)."""
    return f"""
  SELECT li, {item} AS item, {shape} AS shape,
    {e}.auditID AS auditID, {e}.level AS level, {e}.stage AS stage, {e}.verb AS verb,
    {e}.requestURI AS requestURI, {e}.user.username AS username, {e}.user.uid AS uid,
    {e}.user.groups AS groups, {e}.impersonatedUser->>'$.username' AS impersonated,
    {e}.sourceIPs AS sourceIPs,
    {e}.userAgent AS userAgent, {e}.objectRef.resource AS resource, {e}.objectRef.subresource AS subresource,
    {e}.objectRef.namespace AS namespace, {e}.objectRef.name AS name, {e}.objectRef.apiGroup AS apiGroup,
    {e}.objectRef.apiVersion AS apiVersion, {e}.responseStatus.code AS code_text,
    {e}.responseStatus.reason AS reason, {e}.annotations::VARCHAR AS annotations,
    {e}.requestObject::VARCHAR AS requestObject, {e}.responseObject::VARCHAR AS responseObject,
    {e}.requestReceivedTimestamp AS rrt_text, {e}.stageTimestamp AS st_text,
    {e}.annotations->>'$."authorization.k8s.io/decision"' AS decision,
    NULLIF('{{' || concat_ws(',',
      '"user.extra":' || {e}.user.extra::VARCHAR,
      '"impersonatedUser":' || {e}.impersonatedUser::VARCHAR,
      '"objectRef.uid":' || to_json({e}.objectRef.uid)::VARCHAR,
      '"objectRef.resourceVersion":' || to_json({e}.objectRef.resourceVersion)::VARCHAR,
      '"responseStatus.status":' || to_json({e}.responseStatus.status)::VARCHAR,
      '"responseStatus.message":' || to_json({e}.responseStatus.message)::VARCHAR,
      {envelope}) || '}}', '{{}}') AS attributes,
    NULL::VARCHAR AS method,
    CASE WHEN {e} IS NULL THEN 'bad_event'
         WHEN {e}.kind IS DISTINCT FROM 'Event' AND {e}.auditID IS NULL AND {e}.verb IS NULL
              AND {e}.objectRef IS NULL AND {e}.user IS NULL THEN 'not_audit_event' END AS problem"""


_CTES = """WITH d AS (SELECT li, line, @@VALID@@ AS ok, @@PARSE@@ AS e FROM t),
s AS (SELECT *, CASE
    WHEN length(line) = 0 THEN 'empty'
    WHEN NOT ok THEN 'invalid'
    WHEN e.items IS NOT NULL OR e.kind = 'EventList' THEN 'list'
    WHEN e.records IS NOT NULL THEN 'records'
    WHEN e.protoPayload IS NOT NULL THEN 'gcp'
    WHEN e.properties IS NOT NULL OR e.category IS NOT NULL OR e.operationName IS NOT NULL THEN 'azure'
    ELSE 'event' END AS shape FROM d),
items AS (
  SELECT li, unnest(range(len(e.items))) AS item, unnest(e.items) AS x FROM s WHERE shape = 'list'),
item_events AS (SELECT li, item, x, from_json(x, $event) AS ie FROM items
                WHERE json_valid(x) AND left(ltrim(x), 1) = '{'
                UNION ALL
                SELECT li, item, x, NULL FROM items WHERE NOT (json_valid(x) AND left(ltrim(x), 1) = '{')),
records AS (
  SELECT li, unnest(range(len(e.records))) AS item, unnest(e.records) AS r FROM s WHERE shape = 'records'),
azure AS (
  SELECT li, NULL::BIGINT AS item, line AS env FROM s WHERE shape = 'azure'
  UNION ALL SELECT li, item, r FROM records WHERE json_valid(r)),
azure_events AS (
  SELECT li, item, env, env->>'$.properties.log' AS log,
         json_merge_patch(env, '{"properties":{"log":null}}')::VARCHAR AS env_rest FROM azure),
azure_parsed AS (
  SELECT *, CASE WHEN json_valid(log) AND left(ltrim(log), 1) = '{' THEN from_json(log, $event) END AS ae
  FROM azure_events),
gcp AS (SELECT li, line, from_json(line, $gcp) AS p FROM s WHERE shape = 'gcp'),
gcp_cols AS (
  SELECT li, line, p,
    regexp_extract(p.protoPayload.methodName, $method, ['g', 'v', 'res', 'sub', 'verb']) AS m,
    regexp_extract(p.protoPayload.resourceName, $resname, ['g', 'v', 'ns', 'res', 'name', 'sub']) AS r,
    list_transform(p.protoPayload.authorizationInfo, lambda a: a.granted) AS granted,
    p.protoPayload.status IS NOT NULL AS has_status,
    TRY_CAST(coalesce(p.protoPayload.status->>'$.code', '0') AS INTEGER) AS rpc
  FROM gcp),
"""
_SHAPE_CTE = """s AS (SELECT *, CASE
    WHEN length(line) = 0 THEN 'empty'
    WHEN NOT ok THEN 'invalid'
    WHEN e.items IS NOT NULL OR e.kind = 'EventList' THEN 'list'
    WHEN e.records IS NOT NULL THEN 'records'
    WHEN e.protoPayload IS NOT NULL THEN 'gcp'
    WHEN e.properties IS NOT NULL OR e.category IS NOT NULL OR e.operationName IS NOT NULL THEN 'azure'
    ELSE 'event' END AS shape FROM d),
"""
_UNION = """@@NATIVE@@
  UNION ALL
@@LIST_ITEMS@@
  UNION ALL
  SELECT li, item, 'azure' AS shape, * EXCLUDE (li, item, shape, method, problem, log, env),
    CASE WHEN log IS NULL THEN env->>'$.operationName' END AS method,
    CASE WHEN log IS NULL THEN 'not_k8s_audit' ELSE problem END AS problem
  FROM (
@@AZURE@@
  )
  UNION ALL
  SELECT li, NULL AS item, 'gcp' AS shape,
    p.operation.id AS auditID, NULL AS level,
    CASE WHEN p.operation.last THEN 'ResponseComplete' END AS stage,
    NULLIF(m.verb, '') AS verb,
    coalesce(p.protoPayload.requestURI,
             CASE WHEN starts_with(p.protoPayload.resourceName, '/') THEN p.protoPayload.resourceName END),
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
  FROM (SELECT *, CASE WHEN list_contains(granted, false) THEN 'forbid'
                       WHEN len(granted) > 0 THEN 'allow' END AS decision FROM gcp_cols)
  UNION ALL
  SELECT li, NULL, shape,
    NULLIF(regexp_extract(line, '"auditID":"([^"]*)"', 1), ''),
    NULLIF(regexp_extract(line, '"level":"([^"]*)"', 1), ''),
    NULLIF(regexp_extract(line, '"stage":"([^"]*)"', 1), ''),
    NULLIF(regexp_extract(line, '"verb":"([^"]*)"', 1), ''),
    NULLIF(regexp_extract(line, '"requestURI":"([^"]*)"', 1), ''),
    NULLIF(regexp_extract(line, '"user":\\{"username":"([^"]*)"', 1), ''), NULL, NULL, NULL,
    CASE WHEN regexp_extract(line, '"sourceIPs":\\["([^"]*)"', 1) <> ''
         THEN [regexp_extract(line, '"sourceIPs":\\["([^"]*)"', 1)] END,
    NULLIF(regexp_extract(line, '"userAgent":"([^"]*)"', 1), ''),
    NULLIF(regexp_extract(oref, '"resource":"([^"]*)"', 1), ''),
    NULLIF(regexp_extract(oref, '"subresource":"([^"]*)"', 1), ''),
    NULLIF(regexp_extract(oref, '"namespace":"([^"]*)"', 1), ''),
    NULLIF(regexp_extract(oref, '"name":"([^"]*)"', 1), ''),
    NULLIF(regexp_extract(oref, '"apiGroup":"([^"]*)"', 1), ''),
    NULLIF(regexp_extract(oref, '"apiVersion":"([^"]*)"', 1), ''),
    NULLIF(regexp_extract(line, '"responseStatus":\\{[^{}]*"code":([0-9]+)', 1), ''), NULL, NULL, NULL, NULL,
    NULLIF(regexp_extract(line, '"requestReceivedTimestamp":"([^"]*)"', 1), ''),
    NULLIF(regexp_extract(line, '"stageTimestamp":"([^"]*)"', 1), ''),
    NULL, NULL, NULL, CASE WHEN shape = 'empty' THEN 'empty' ELSE 'invalid_json' END
  FROM (SELECT *, regexp_extract(line, '"objectRef":\\{([^{}]*)\\}', 1) AS oref FROM s
        WHERE shape IN ('invalid', 'empty'))
"""
_FINAL = """SELECT li, item, shape,
  auditID, level, stage, verb, requestURI, username, uid, groups, impersonated, sourceIPs, userAgent,
  resource, subresource, namespace, name, apiGroup, apiVersion, code, reason, annotations,
  requestObject, responseObject, attributes, problem, sourceIPs[1] AS source_ip,
  epoch_us(TRY_CAST(rrt_text AS TIMESTAMPTZ)) AS rrt_us,
  epoch_us(TRY_CAST(st_text AS TIMESTAMPTZ)) AS st_us,
  (rrt_text IS NOT NULL AND TRY_CAST(rrt_text AS TIMESTAMPTZ) IS NULL)
    OR (st_text IS NOT NULL AND TRY_CAST(st_text AS TIMESTAMPTZ) IS NULL) AS bad_ts,
  code_text IS NOT NULL AND code IS NULL AS bad_code,
  CASE WHEN problem = 'not_k8s_audit' THEN coalesce(method, verb) ELSE verb END AS action,
  CASE WHEN decision = 'forbid' THEN 'failure' WHEN code >= 400 THEN 'failure'
       WHEN code IS NOT NULL THEN 'success' ELSE 'unknown' END AS outcome,
  CASE WHEN problem IN ('empty', 'invalid_json', 'not_audit_event', 'bad_event') AND username IS NULL
            AND verb IS NULL THEN NULL
       ELSE concat_ws(' ', coalesce(username, '-'), coalesce(verb, method, '-'),
         CASE WHEN resource IS NOT NULL THEN resource || coalesce('/' || subresource, '') || ' '
                || CASE WHEN namespace IS NOT NULL THEN namespace || '/' || coalesce(name, '*')
                        ELSE coalesce(name, '*') END
              ELSE coalesce(requestURI, '-') END,
         '->', coalesce(code::VARCHAR, '-')) END AS message
FROM (SELECT *, TRY_CAST(code_text AS INTEGER) AS code FROM unioned)
"""


def _full(guarded: bool) -> str:
    """Every shape; the guarded variant survives lines that are not JSON objects."""
    if guarded:
        valid = "json_valid(line) AND left(ltrim(line), 1) = '{'"
        parse = f"CASE WHEN {valid} THEN from_json(line, $line) END"
    else:
        valid = "length(line) > 0"
        parse = "from_json(line, $line)"
    native = _native("e", "'event'", "NULL::BIGINT", "NULL") + "\n  FROM s WHERE shape = 'event'"
    list_items = _native("ie", "'list'", "item", "NULL") + "\n  FROM item_events"
    azure = _native("ae", "'azure'", "item", "'\"azure\":' || env_rest") + ", log, env\n  FROM azure_parsed"
    parts = {
        "VALID": valid,
        "PARSE": parse,
        "NATIVE": native,
        "LIST_ITEMS": list_items,
        "AZURE": azure,
        "GROUP_CASE": _GROUP_CASE,
        "RPC_CASE": _RPC_CASE,
    }
    sql = _CTES + "unioned AS (\n" + _UNION + ")\n" + _FINAL
    for token, text in parts.items():
        sql = sql.replace(f"@@{token}@@", text)
    return sql


def _fast() -> str:
    """Native Events only, one ``from_json`` per line: the common case. Rows of another shape come
    back with their ``shape`` and are parsed again by the full query."""
    native = _native("e", "shape", "NULL::BIGINT", "NULL") + "\n  FROM s"
    head = "WITH d AS (SELECT li, line, true AS ok, from_json(line, $line) AS e FROM t),\n"
    return head + _SHAPE_CTE + "unioned AS (\n" + native + "\n)\n" + _FINAL


AUDIT_SQL = _full(guarded=False)
AUDIT_SQL_GUARDED = _full(guarded=True)
FAST_SQL = _fast()
VALID_SQL = "SELECT li FROM t WHERE json_valid(line) AND left(ltrim(line), 1) = '{'"


def params_for(sql: str) -> dict[str, str]:
    """The named parameters a statement uses (DuckDB rejects extra ones)."""
    return {name: value for name, value in PARAMS.items() if f"${name}" in sql}
