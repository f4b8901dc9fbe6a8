"""Messages of Kubernetes system components: klog (control plane, kube-proxy, kubelet), etcd's zap JSON,
containerd's logrus text and syslog lines. Vectorized like ``workloads``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kubetrail.simulate.pools import hex_ids, pick, stamp, weighted

__all__ = [
    "apiserver_lines",
    "containerd_lines",
    "etcd_lines",
    "klog_headers",
    "klog_lines",
    "kubelet_lines",
    "syslog_lines",
]


def klog_headers(ts: np.ndarray, levels: Sequence[str], pid: int, sources: Sequence[str]) -> list[str]:
    """``I0505 17:59:40.692994   28133 file.go:70] `` headers (Lmmdd hh:mm:ss.uuuuuu threadid file:line])."""
    t = stamp(ts, "%m%d %H:%M:%S", 6)
    return [f"{lv}{tt} {pid:7d} {src}] " for lv, tt, src in zip(levels, t, sources, strict=True)]


_KLOG: dict[str, tuple[tuple[str, str, str], ...]] = {
    "kube-controller-manager": (
        (
            "I",
            "replica_set.go:679",
            '"Finished syncing" logger="replicaset-controller" kind="ReplicaSet" '
            'key="shop/cart-%d" duration="%dµs"',
        ),
        (
            "I",
            "event.go:389",
            '"Event occurred" object="shop/orders-%d" fieldPath="" kind="Deployment" '
            'apiVersion="apps/v1" type="Normal" reason="ScalingReplicaSet" '
            'message="Scaled up replica set to %d"',
        ),
        (
            "I",
            "garbagecollector.go:%d",
            '"syncing garbage collector with updated resources from discovery" '
            'logger="garbage-collector-controller" diff="added: [], removed: []" took=%d',
        ),
        (
            "I",
            "endpointslice_controller.go:%d",
            '"Syncing service" logger="endpointslice-controller" service="shop/cart" duration="%dms"',
        ),
    ),
    "kube-scheduler": (
        (
            "I",
            "schedule_one.go:314",
            '"Successfully bound pod to node" pod="shop/cart-%d" node="kt-worker-1" '
            "evaluatedNodes=3 feasibleNodes=%d",
        ),
        (
            "I",
            "leaderelection.go:%d",
            '"successfully renewed lease" lease="kube-system/kube-scheduler" renewDeadlineMs=%d',
        ),
    ),
    "kube-proxy": (
        ("I", "proxier.go:805", '"SyncProxyRules complete" ipFamily="IPv4" elapsed="%d.%dms"'),
        ("I", "proxier.go:820", '"Syncing iptables rules" ipFamily="IPv4" numServices=%d numEndpoints=%d'),
        (
            "I",
            "service.go:%d",
            '"Adding new service port" portName="shop/cart:http" servicePort="10.96.12.%d:8080/TCP"',
        ),
    ),
    "kindnet-cni": (
        ("I", "main.go:297", "Handling node with IPs: map[10.0.0.%d:{}] (%d routes)"),
        ("I", "main.go:324", "Node kt-worker-1 has CIDR [10.244.%d.0/24] (sync %d)"),
    ),
}


def _fill(tmpl: str, a: int, b: int) -> str:
    count = tmpl.count("%d")
    return tmpl % (a, b) if count == 2 else (tmpl % a if count == 1 else tmpl)


def klog_lines(
    ts: np.ndarray, rng: np.random.Generator, component: str, ip: str = "", pid: int = 1
) -> list[str]:
    pool = _KLOG.get(component, _KLOG["kube-controller-manager"])
    n = len(ts)
    k = rng.integers(0, len(pool), n).tolist()
    a, b = rng.integers(1, 999, n).tolist(), rng.integers(1, 99, n).tolist()
    heads = klog_headers(
        ts,
        ["W" if x == 7 else pool[i][0] for i, x in zip(k, b, strict=True)],
        pid,
        [_fill(pool[i][1], x, y) for i, x, y in zip(k, a, b, strict=True)],
    )
    return [h + _fill(pool[i][2], x, y) for h, i, x, y in zip(heads, k, a, b, strict=True)]


_API_URIS = (
    "/api/v1/namespaces/shop/pods?limit=500",
    "/apis/apps/v1/namespaces/shop/deployments/cart",
    "/api/v1/nodes/kt-worker-1/status",
    "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/kt-worker-1",
    "/api/v1/namespaces/payments/configmaps/payments-config",
    "/apis/discovery.k8s.io/v1/endpointslices?watch=true",
)
_API_UA = (
    "kubectl/v1.31.2 (linux/amd64) kubernetes/5864a46",
    "kubelet/v1.31.2 (linux/amd64) kubernetes/5864a46",
    "kube-controller-manager/v1.31.2 (linux/amd64) "
    "kubernetes/5864a46/system:serviceaccount:kube-system:replicaset-controller",
)


def apiserver_lines(ts: np.ndarray, rng: np.random.Generator) -> list[str]:
    n = len(ts)
    kind = weighted(rng, ("http", "quota", "alloc", "watch"), (70, 10, 5, 15), n)
    heads = klog_headers(
        ts, ["I"] * n, 1, ["httplog.go:134" if k == "http" else "controller.go:615" for k in kind]
    )
    uris, uas = pick(rng, _API_URIS, n), pick(rng, _API_UA, n)
    lat, port = rng.gamma(2.0, 2.0, n).tolist(), rng.integers(30000, 65000, n).tolist()
    ids = hex_ids(rng, n, 16)
    out = []
    for h, k, u, ua, la, p, i in zip(heads, kind, uris, uas, lat, port, ids, strict=True):
        if k == "http":
            aid = f"{i[:8]}-{i[8:12]}-4{i[13:16]}-a{i[17:20]}-{i[20:]}"
            out.append(
                f'{h}"HTTP" verb="GET" URI="{u}" latency="{la:.3f}ms" userAgent="{ua}" '
                f'audit-ID="{aid}" srcIP="10.0.0.11:{p}" resp=200'
            )
        elif k == "quota":
            out.append(f"{h}quota admission added evaluator for: leases.coordination.k8s.io")
        elif k == "alloc":
            out.append(
                f'{h}"allocated clusterIPs" service="shop/cart-{p}" '
                f'clusterIPs={{"IPv4":"10.96.{p % 250}.{p % 199}"}}'
            )
        else:
            out.append(
                f'{h}"Terminating watch" resource="endpointslices" userAgent="{ua}" elapsed="{la * 60:.1f}s"'
            )
    return out


_ETCD = (
    ("info", "mvcc/index.go:214", "compact tree index", '"revision":%d,"took":"%dms"'),
    (
        "info",
        "mvcc/kvstore_compaction.go:69",
        "finished scheduled compaction",
        '"compact-revision":%d,"took":"%d.3ms"',
    ),
    (
        "warn",
        "etcdserver/util.go:170",
        "apply request took too long",
        '"took":"1%dms","expected-duration":"100ms","prefix":"read-only '
        'range ","request":"key:\\"/registry/pods/shop/\\" '
        'range_end:\\"/registry/pods/shop0\\" ","response":"range_response_count:%d size:18342"',
    ),
    (
        "info",
        "etcdserver/server.go:1383",
        "triggering snapshot",
        '"local-member-applied-index":%d,"snapshot-count":%d',
    ),
)


def etcd_lines(ts: np.ndarray, rng: np.random.Generator) -> list[str]:
    n = len(ts)
    t = stamp(ts, "%Y-%m-%dT%H:%M:%S", 6, suffix="Z")
    k = weighted(rng, ("0", "1", "2", "3"), (40, 40, 15, 5), n)
    a, b = rng.integers(10000, 999999, n).tolist(), rng.integers(1, 99, n).tolist()
    out = []
    for tt, ks, x, y in zip(t, k, a, b, strict=True):
        lv, caller, msg, extra = _ETCD[int(ks)]
        out.append(f'{{"level":"{lv}","ts":"{tt}","caller":"{caller}","msg":"{msg}",{extra % (x, y)}}}')
    return out


def kubelet_lines(
    ts: np.ndarray, rng: np.random.Generator, pods: Sequence[tuple[str, str, str]], pid: int
) -> list[str]:
    """kubelet klog lines about ``pods`` (``(namespace/name, uid, container)`` tuples)."""
    n = len(ts)
    kind = weighted(rng, ("pleg", "probe", "volume", "remove", "sync"), (30, 15, 25, 10, 20), n)
    pidx = rng.integers(0, len(pods), n).tolist()
    cids = hex_ids(rng, n, 32)
    srcs = {
        "pleg": "kubelet.go:2421",
        "probe": "prober.go:107",
        "volume": "reconciler_common.go:245",
        "remove": "scope.go:117",
        "sync": "kubelet_pods.go:1012",
    }
    heads = klog_headers(ts, ["I"] * n, pid, [srcs[k] for k in kind])
    out = []
    for h, k, i, cid in zip(heads, kind, pidx, cids, strict=True):
        pod, uid, cont = pods[i]
        if k == "pleg":
            out.append(
                f'{h}"SyncLoop (PLEG): event for pod" pod="{pod}" '
                f'event={{"ID":"{uid}","Type":"ContainerStarted","Data":"{cid}"}}'
            )
        elif k == "probe":
            out.append(
                f'{h}"Probe failed" probeType="Readiness" pod="{pod}" podUID="{uid}" containerName="{cont}" '
                'probeResult="failure" output="Get '
                '\\"http://10.244.1.5:8080/healthz\\": context deadline exceeded"'
            )
        elif k == "volume":
            short = pod.rsplit("-", 1)[-1]
            out.append(
                f'{h}"operationExecutor.VerifyControllerAttachedVolume '
                f'started for volume \\"kube-api-access-{short}\\" '
                f'(UniqueName: \\"kubernetes.io/projected/{uid}-kube-api-access-{short}\\")" pod="{pod}"'
            )
        elif k == "remove":
            out.append(f'{h}"RemoveContainer" containerID="{cid}"')
        else:
            out.append(f'{h}"SyncLoop UPDATE" source="api" pods=["{pod}"]')
    return out


def containerd_lines(ts: np.ndarray, rng: np.random.Generator, images: Sequence[str]) -> list[str]:
    """containerd's logrus text format: ``time="..." level=info msg="..."``."""
    from kubetrail.simulate.timefmt import rfc3339_nano

    n = len(ts)
    t = rfc3339_nano(ts)
    kind = weighted(rng, ("start", "create", "image", "shim", "status"), (25, 25, 20, 20, 10), n)
    ids, imgs = hex_ids(rng, n, 32), pick(rng, images, n)
    out = []
    for tt, k, i, im in zip(t, kind, ids, imgs, strict=True):
        if k == "start":
            out.append(f'time="{tt}" level=info msg="StartContainer for \\"{i}\\" returns successfully"')
        elif k == "create":
            out.append(
                f'time="{tt}" level=info msg="CreateContainer within sandbox \\"{i[:32]}\\" for '
                f'&ContainerMetadata{{Name:app,Attempt:0,}} returns container id \\"{i}\\""'
            )
        elif k == "image":
            out.append(
                f'time="{tt}" level=info msg="ImageCreate event name:\\"{im}\\" '
                f'labels:{{key:\\"io.cri-containerd.image\\" value:\\"managed\\"}}"'
            )
        elif k == "shim":
            out.append(f'time="{tt}" level=info msg="shim disconnected" id={i} namespace=k8s.io')
        else:
            out.append(
                f'time="{tt}" level=error msg="ContainerStatus '
                f'for \\"{i}\\" failed" error="rpc error: code = '
                f'NotFound desc = an error occurred when try to find container \\"{i}\\": not found"'
            )
    return out


def syslog_lines(ts: np.ndarray, rng: np.random.Generator, host: str) -> list[str]:
    """RFC 3164 lines as rsyslog writes ``/var/log/syslog`` (``Jan  1 12:00:00 host prog[pid]: msg``)."""
    n = len(ts)
    t = stamp(ts, "%b %e %H:%M:%S", 0)
    kind = weighted(rng, ("scope", "kernel", "cron", "logind", "timesync"), (40, 25, 15, 10, 10), n)
    ids = hex_ids(rng, n, 32)
    up = ((ts - ts.min()) / 1e9 + 86400).tolist() if n else []
    pids = rng.integers(1000, 60000, n).tolist()
    out = []
    for tt, k, i, u, p in zip(t, kind, ids, up, pids, strict=True):
        if k == "scope":
            out.append(
                f"{tt} {host} systemd[1]: Started cri-containerd-{i}.scope - libcontainer container {i}."
            )
        elif k == "kernel":
            out.append(f"{tt} {host} kernel: [{u:12.6f}] cni0: port 3(veth{i[:8]}) entered forwarding state")
        elif k == "cron":
            out.append(
                f"{tt} {host} CRON[{p}]: (root) CMD (test -x /usr/sbin/anacron "
                f"|| {{ cd / && run-parts --report /etc/cron.hourly; }})"
            )
        elif k == "logind":
            out.append(f"{tt} {host} systemd-logind[612]: Removed session {p % 97}.")
        else:
            out.append(
                f"{tt} {host} systemd-timesyncd[588]: Network "
                "configuration changed, trying to establish connection."
            )
    return out
