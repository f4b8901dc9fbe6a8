"""Search and pipes -> OpenSearch DSL; pipes without an exact equivalent raise QueryError."""

from __future__ import annotations

import pytest

from kubetrail.errors import QueryError
from kubetrail.query.to_opensearch import MAX_BUCKETS, to_opensearch

from .conftest import NOW


def q(text: str, **kw: object) -> dict[str, object]:
    return to_opensearch(text, now=NOW, **kw)  # type: ignore[arg-type]


def test_search_translation() -> None:
    body = q("verb:create objectRef.subresource:(exec OR attach) -user.username:system\\:admin")
    assert body["query"] == {
        "bool": {
            "filter": [
                {
                    "bool": {
                        "filter": [
                            {"term": {"kubernetes.audit.verb": "create"}},
                            {
                                "bool": {
                                    "should": [
                                        {"term": {"kubernetes.audit.objectRef.subresource": "exec"}},
                                        {"term": {"kubernetes.audit.objectRef.subresource": "attach"}},
                                    ],
                                    "minimum_should_match": 1,
                                }
                            },
                            {
                                "bool": {
                                    "must_not": [{"term": {"kubernetes.audit.user.username": "system:admin"}}]
                                }
                            },
                        ]
                    }
                }
            ]
        }
    }
    assert body["sort"] == [{"@timestamp": "desc"}]


@pytest.mark.parametrize(
    ("text", "clause"),
    [
        ('"connection refused"', {"match_phrase": {"message": "connection refused"}}),
        ("time*", {"wildcard": {"message": {"value": "time*", "case_insensitive": True}}}),
        ("sourceIPs:203.0.113.*", {"wildcard": {"kubernetes.audit.sourceIPs": {"value": "203.0.113.*"}}}),
        ("responseStatus.code:>=400", {"range": {"kubernetes.audit.responseStatus.code": {"gte": 400}}}),
        (
            "responseStatus.code:[400 TO 500}",
            {"range": {"kubernetes.audit.responseStatus.code": {"gte": 400, "lt": 500}}},
        ),
        ("responseStatus.code:403", {"term": {"kubernetes.audit.responseStatus.code": 403}}),
        ("@timestamp:>now-1h", {"range": {"@timestamp": {"gt": "2024-05-01T11:00:00Z"}}}),
        ("_exists_:objectRef.name", {"exists": {"field": "kubernetes.audit.objectRef.name"}}),
        (
            "requestObject.spec.hostPID:true",
            {"term": {"kubernetes.audit.requestObject.spec.hostPID": "true"}},
        ),
        (
            "annotations.authorization.k8s.io/decision:allow",
            {"term": {"kubernetes.audit.annotations.authorization.k8s.io/decision": "allow"}},
        ),
        (
            "requestObject.spec.containers[*].image:evil*",
            {"wildcard": {"kubernetes.audit.requestObject.spec.containers.image": {"value": "evil*"}}},
        ),
        ("x:a\\*b*", {"wildcard": {"attributes.x": {"value": "a\\*b*"}}}),
    ],
)
def test_leaves(text: str, clause: dict[str, object]) -> None:
    assert q(text)["query"] == {"bool": {"filter": [clause]}}


def test_time_bounds_and_limit() -> None:
    body = q("*", since="1h", until="2024-05-01T11:30:00Z", limit=50)
    assert body["query"] == {
        "bool": {
            "filter": [
                {"range": {"@timestamp": {"gte": "2024-05-01T11:00:00Z", "lt": "2024-05-01T11:30:00Z"}}}
            ]
        }
    }
    assert body["size"] == 50
    assert q("*")["query"] == {"match_all": {}}


def test_where_fields_sort_head_dedup() -> None:
    body = q(
        "verb:get | where responseStatus.code >= 400 and user.username != 'bob' and verb in ('get') "
        "and startswith(pod, 'web-') and namespace is not null | fields verb, pod "
        "| sort -responseStatus.code "
        "| head 5 | dedup pod"
    )
    filters = body["query"]["bool"]["filter"]  # type: ignore[index]
    assert filters[1] == {
        "bool": {
            "filter": [
                {"range": {"kubernetes.audit.responseStatus.code": {"gte": 400}}},
                {"bool": {"must_not": [{"term": {"kubernetes.audit.user.username": "bob"}}]}},
                {"terms": {"kubernetes.audit.verb": ["get"]}},
                {"wildcard": {"kubernetes.pod.name": {"value": "web-*"}}},
                {"exists": {"field": "kubernetes.namespace"}},
            ]
        }
    }
    assert body["_source"] == ["kubernetes.audit.verb", "kubernetes.pod.name"]
    assert body["sort"] == [{"kubernetes.audit.responseStatus.code": "desc"}]
    assert body["size"] == 5
    assert body["collapse"] == {"field": "kubernetes.pod.name"}


def test_aggregations() -> None:
    body = q(
        "responseStatus.code:(401 OR 403) | stats count() dc(verb) avg(responseStatus.code) by sourceIPs"
    )
    assert body["size"] == 0 and "sort" not in body
    assert body["aggs"] == {
        "sourceIPs": {
            "terms": {"field": "kubernetes.audit.sourceIPs", "size": MAX_BUCKETS},
            "aggs": {
                "dc(verb)": {"cardinality": {"field": "kubernetes.audit.verb"}},
                "avg(responseStatus.code)": {"avg": {"field": "kubernetes.audit.responseStatus.code"}},
            },
        }
    }
    body = q("* | timechart span=5m count() by namespace")
    assert body["aggs"] == {
        "_time": {
            "date_histogram": {"field": "@timestamp", "fixed_interval": "300s"},
            "aggs": {"namespace": {"terms": {"field": "kubernetes.namespace", "size": MAX_BUCKETS}}},
        }
    }
    body = q("* | top 3 user.username by verb")
    assert body["aggs"] == {
        "verb": {
            "terms": {"field": "kubernetes.audit.verb", "size": MAX_BUCKETS},
            "aggs": {"user.username": {"terms": {"field": "kubernetes.audit.user.username", "size": 3}}},
        }
    }


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("x | rare verb", 4),
        ("x | stats count() by verb | sort -count", 28),
        ("x | dedup a, b", 4),
        ("x | top 3 a, b", 4),
        ("x | where match(message, 'a.*')", 10),
        ("x | where verb = namespace", 15),
        ("responseStatus.code:4*", 20),
        ("requestObject.spec.containers[0].image:x", 0),
    ],
)
def test_untranslatable_pipes_raise(text: str, position: int) -> None:
    with pytest.raises(QueryError) as info:
        q(text)
    assert info.value.position == position
