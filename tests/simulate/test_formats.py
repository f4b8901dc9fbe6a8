"""The lines follow the real formats other parts parse: klog, logrus, RFC 3164, journald export, nginx."""

from __future__ import annotations

import json
import re

from kubetrail.simulate import SimulationReport

from .helpers import cri_records
from .test_truth import records

KLOG_RE = re.compile(rb"^[IWEF]\d{4} \d{2}:\d{2}:\d{2}\.\d{6} +\d+ [\w./-]+:\d+\] ")
LOGRUS_RE = re.compile(
    rb'^time="\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z" level=(info|warning|error) msg='
)
SYSLOG_RE = re.compile(rb"^[A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2} kt-[\w-]+ [\w-]+(\[\d+\])?: ")
NGINX_RE = re.compile(
    rb'^\d+\.\d+\.\d+\.\d+ - - \[\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} \+0000\] "[A-Z]+ \S+ HTTP/1\.1" '
    rb'\d{3} \d+ "[^"]*" "[^"]*"'
)
CRI_TS_RE = re.compile(rb"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d*[1-9])?Z (stdout|stderr) [PF] ")


def test_node_files(small_sim: SimulationReport) -> None:
    for stream, info in small_sim.streams.items():
        if info.layer != "node":
            continue
        recs = records(small_sim.root, info)
        assert recs, stream
        pattern = {"klog": KLOG_RE, "logrus": LOGRUS_RE, "syslog": SYSLOG_RE}.get(info.format)
        if pattern is not None:
            assert all(pattern.match(r) for r in recs), (
                stream,
                next(r for r in recs if not pattern.match(r)),
            )
        if info.format == "journald":
            for r in recs:
                obj = json.loads(r)
                for key in (
                    "__CURSOR",
                    "__REALTIME_TIMESTAMP",
                    "_SYSTEMD_UNIT",
                    "_HOSTNAME",
                    "PRIORITY",
                    "MESSAGE",
                    "_PID",
                    "SYSLOG_IDENTIFIER",
                    "KT_SEQ",
                ):
                    assert key in obj, key
                assert isinstance(obj["MESSAGE"], (str, list))
                assert obj["__CURSOR"].startswith("s=") and ";i=" in obj["__CURSOR"]


def test_journald_byte_array_messages(small_sim: SimulationReport) -> None:
    arrays = 0
    for info in small_sim.streams.values():
        if info.format == "journald":
            for r in records(small_sim.root, info):
                msg = json.loads(r)["MESSAGE"]
                if isinstance(msg, list):
                    raw = bytes(msg)
                    assert b"kt_seq=" in raw
                    try:
                        raw.decode("utf-8")
                    except UnicodeDecodeError:
                        arrays += 1
    assert arrays > 0


def test_cri_timestamps_are_rfc3339nano_trimmed(small_sim: SimulationReport) -> None:
    path = next(small_sim.root.glob("kt-worker-1/var/log/pods/*/*/0.log"))
    for line in path.read_bytes().split(b"\n")[:-1]:
        assert CRI_TS_RE.match(line), line[:80]


def test_control_plane_klog_and_etcd_json(small_sim: SimulationReport) -> None:
    pods = small_sim.root / "kt-control-plane/var/log/pods"
    for comp in ("kube-apiserver", "kube-scheduler", "kube-controller-manager"):
        (path,) = pods.glob(f"kube-system_{comp}-kt-control-plane_*/{comp}/0.log")
        msgs = [m for _, m in cri_records(path.read_bytes())]
        assert all(KLOG_RE.match(m) for m in msgs), comp
        assert any(re.search(rb'\] "[^"]+"( \w[\w-]*=)', m) for m in msgs), "structured klog"
    (etcd,) = pods.glob("kube-system_etcd-kt-control-plane_*/etcd/0.log")
    for _, m in cri_records(etcd.read_bytes()):
        obj = json.loads(m)
        assert {"level", "ts", "caller", "msg", "kt_seq"} <= obj.keys()


def _messages(sim: SimulationReport, pod_dir_prefix: str, container: str) -> list[bytes]:
    """Messages of every container stream whose pods path starts with ``<ns>_<pod prefix>``."""
    out: list[bytes] = []
    for info in sim.streams.values():
        if info.format in ("cri", "docker") and any(
            f"/var/log/pods/{pod_dir_prefix}" in f and f"/{container}/" in f for f in info.files
        ):
            out.extend(records(sim.root, info))
        elif info.format == "docker":  # docker streams' files live under var/lib/docker: resolve the pod link
            links = list(sim.root.glob(f"{info.node}/var/log/pods/{pod_dir_prefix}*/{container}/*.log"))
            if any(link.resolve().as_posix().endswith(info.files[-1]) for link in links):
                out.extend(records(sim.root, info))
    return out


def test_workload_formats(small_sim: SimulationReport) -> None:
    frontend = _messages(small_sim, "shop_frontend-", "nginx")
    access = [m for m in frontend if not re.match(rb"^\d{4}/", m)]  # error-log lines go to stderr
    assert access and all(NGINX_RE.match(m) for m in access)
    java = b"\n".join(_messages(small_sim, "shop_orders-", "orders"))
    assert re.search(rb"\n\tat com\.example\.shop\.orders\.\w+\.\w+\(\w+\.java:\d+\) kt_seq=", java)
    go = _messages(small_sim, "shop_cart-", "cart")
    assert sum(1 for m in go if m.startswith(b"{")) > len(go) * 0.9
    assert all(json.loads(m)["kt_seq"] for m in go if m.startswith(b"{"))
