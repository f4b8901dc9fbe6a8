"""The pySigma processing pipeline: field names as rules write them -> names the backend resolves.

The backend resolves every field with :func:`kubetrail.schema.resolve` (exact columns, the native
audit aliases ``verb``/``objectRef.*``/``user.username``/``sourceIPs``/``responseStatus.code``, and
paths inside the JSON columns such as ``requestObject.spec.hostPID``). This pipeline adds what
``resolve`` cannot know:

* **Repairs of names that are not real audit paths** but appear in public SigmaHQ rules (measured
  against real events, see ``../shared/data/README.md``): bare ``apiGroup`` ->
  ``objectRef.apiGroup``; ``hostPath`` -> the host paths of the pod's volumes; ``capabilities`` ->
  the capabilities added by any container (plain, init and ephemeral).
* **ECS / generic names** other rule sets use for the same facts (``user.name`` stays a column;
  ``ClientIP`` and ``src_ip`` map to ``source.ip``; ``Image`` to ``container.image.name``).
* **Placeholders**: ``%cluster_networks%`` (with ``|expand``) becomes the configured cluster CIDRs,
  so "token used from outside the cluster" rules follow the deployment's address plan.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
from sigma.processing.transformations import FieldMappingTransformation
from sigma.processing.transformations.base import ValueTransformation
from sigma.types import SigmaCIDRExpression, SigmaExpansion, SigmaQueryExpression, SigmaString, SigmaType

from kubetrail.detect.backend import field_target, sql_string

__all__ = [
    "DEFAULT_CLUSTER_NETWORKS",
    "DEFAULT_TRUSTED_REGISTRIES",
    "FIELD_REPAIRS",
    "ClusterNetworksPlaceholder",
    "UntrustedImagePlaceholder",
    "kubetrail_pipeline",
]

_CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")

# Field names in public rules that are not audit-event paths -> where the fact really lives.
FIELD_REPAIRS: dict[str | None, str | list[str]] = {
    "apiGroup": "objectRef.apiGroup",
    "hostPath": "requestObject.spec.volumes[*].hostPath.path",
    "capabilities": [
        f"requestObject.spec.{kind}[*].securityContext.capabilities.add[*]" for kind in _CONTAINER_LISTS
    ],
    # generic names used by other rule sets
    "ClientIP": "source.ip",
    "src_ip": "source.ip",
    "SourceIP": "source.ip",
    "Image": "container.image.name",
    "username": "user.username",
    "objectRef.apigroup": "objectRef.apiGroup",
}

# Private and loopback ranges: where a cluster's nodes, pods and services usually live.
DEFAULT_CLUSTER_NETWORKS: tuple[str, ...] = (
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "127.0.0.0/8",
)

# Registries whose images are expected by default (``*.`` = any sub-domain).
DEFAULT_TRUSTED_REGISTRIES: tuple[str, ...] = (
    "docker.io",
    "registry.k8s.io",
    "k8s.gcr.io",
    "gcr.io",
    "*.gcr.io",
    "*.pkg.dev",
    "quay.io",
    "ghcr.io",
    "public.ecr.aws",
    "*.amazonaws.com",
    "mcr.microsoft.com",
    "*.azurecr.io",
    "localhost",
)


def _placeholder_name(val: SigmaType) -> str | None:
    if not isinstance(val, SigmaString) or not val.contains_placeholder():
        return None
    parts = list(val.s)
    return getattr(parts[0], "name", None) if len(parts) == 1 else None


@dataclass
class UntrustedImagePlaceholder(ValueTransformation):
    """``image|expand: '%untrusted_image%'`` -> true when ANY image's registry is not trusted.

    Sigma cannot say "some element does not match" over a list field (a negated selection means "no
    element matches"), so this placeholder becomes a SQL expression evaluated per element.
    """

    registries: list[str] = field(default_factory=lambda: list(DEFAULT_TRUSTED_REGISTRIES))

    def apply_value(self, field: str | None, val: SigmaType) -> SigmaType | None:
        if field is None or _placeholder_name(val) != "untrusted_image":
            return None
        exact = [r.lower() for r in self.registries if not r.startswith("*.")]
        suffixes = [r[1:].lower() for r in self.registries if r.startswith("*.")]

        def untrusted(var: str) -> str:
            tests = [f"kt_image_registry({var}) IN ({', '.join(map(sql_string, exact))})"] if exact else []
            tests += [f"ends_with(kt_image_registry({var}), {sql_string(s)})" for s in suffixes]
            return f"NOT ({' OR '.join(tests) or 'false'})"

        if field_target(field).is_list:
            expr = f"(len(list_filter({{field}}, lambda x: {untrusted('x')})) > 0)"
        else:
            expr = f"({{field}} IS NOT NULL AND {untrusted('{field}')})"
        return SigmaQueryExpression(expr, "untrusted_image")


@dataclass
class ClusterNetworksPlaceholder(ValueTransformation):
    """``%cluster_networks%`` -> an OR of CIDR matches over the configured networks."""

    networks: list[str] = field(default_factory=lambda: list(DEFAULT_CLUSTER_NETWORKS))
    name: str = "cluster_networks"

    def apply_value(self, field: str | None, val: SigmaType) -> SigmaType | None:
        if _placeholder_name(val) != self.name:
            return None
        return SigmaExpansion([SigmaCIDRExpression(cidr) for cidr in self.networks])


def kubetrail_pipeline(
    cluster_networks: Sequence[str] = DEFAULT_CLUSTER_NETWORKS,
    trusted_registries: Sequence[str] = DEFAULT_TRUSTED_REGISTRIES,
    extra_mapping: dict[str, str] | None = None,
) -> ProcessingPipeline:
    """The pipeline every rule goes through before the DuckDB backend compiles it."""
    mapping: dict[str | None, Any] = dict(FIELD_REPAIRS)
    mapping.update(extra_mapping or {})
    return ProcessingPipeline(
        name="kubetrail field mapping",
        priority=20,
        items=[
            ProcessingItem(
                identifier="kubetrail_field_repairs",
                transformation=FieldMappingTransformation(mapping),
            ),
            ProcessingItem(
                identifier="kubetrail_cluster_networks",
                transformation=ClusterNetworksPlaceholder(networks=list(cluster_networks)),
            ),
            ProcessingItem(
                identifier="kubetrail_trusted_registries",
                transformation=UntrustedImagePlaceholder(registries=list(trusted_registries)),
            ),
        ],
    )
