from __future__ import annotations

from kubetrail.formats.paths import dataset_for, parse_pod_path

CID = "ab" * 32


def test_pods_layout() -> None:
    pod = parse_pod_path("/var/log/pods/kube-system_coredns-5d78c9869d-abcde_1c2d-3e4f/coredns/3.log")
    assert pod is not None
    assert (pod.namespace, pod.pod, pod.uid, pod.container, pod.restart_count, pod.rotated) == (
        "kube-system",
        "coredns-5d78c9869d-abcde",
        "1c2d-3e4f",
        "coredns",
        3,
        False,
    )


def test_rotated_and_compressed_files() -> None:
    for suffix in (".20240505-175940", ".20240505-175940.gz"):
        pod = parse_pod_path(f"/var/log/pods/default_web_uid/app/0.log{suffix}")
        assert pod is not None and pod.rotated and pod.restart_count == 0


def test_containers_symlink_layout() -> None:
    pod = parse_pod_path(f"/var/log/containers/web-7f9c_prod_nginx-proxy-{CID}.log")
    assert pod is not None
    assert (pod.pod, pod.namespace, pod.container, pod.container_id, pod.uid) == (
        "web-7f9c",
        "prod",
        "nginx-proxy",
        CID,
        None,
    )
    assert pod.columns()["container.id"] == CID


def test_host_prefix_and_non_matching() -> None:
    assert parse_pod_path("/host/var/log/pods/a_b_c/d/1.log") is not None
    assert parse_pod_path("/var/log/syslog") is None
    assert parse_pod_path("/var/log/containers/no-id.log") is None
    assert parse_pod_path(None) is None


def test_dataset() -> None:
    cp = parse_pod_path("/var/log/pods/kube-system_kube-apiserver-cp1_u/kube-apiserver/0.log")
    dns = parse_pod_path("/var/log/pods/kube-system_coredns-1_u/coredns/0.log")
    assert dataset_for(cp, "container") == "controlplane"
    assert dataset_for(dns, "container") == "container"
    assert dataset_for(None, "journald") == "node"
