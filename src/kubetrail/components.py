"""The component model: receivers, transforms and outputs, each a small class with a config model.

A component registers under a type name (protocol nouns for receivers and outputs, verbs for
transforms) in one of three registries. The topology in ``kubetrail.yaml`` names components by
type; ``kubetrail.config`` validates every component's options against its ``Config`` model before
anything is built.

    @transforms.register("redact")
    class Redact(Transform):
        class Config(ComponentConfig):
            patterns: list[str]
        def transform(self, batch): ...

Transforms are ``RecordBatch -> RecordBatch`` without I/O. Outputs split a pure ``encode(batch)``
from the I/O ``write(batch)``. Receivers run until stopped and hand chunks or batches to a sink.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, ClassVar, Generic, TypeVar

import pyarrow as pa
from pydantic import BaseModel, ConfigDict

__all__ = [
    "Component",
    "ComponentConfig",
    "Output",
    "Receiver",
    "Registry",
    "Transform",
    "load_builtin_components",
    "outputs",
    "receivers",
    "transforms",
]


class ComponentConfig(BaseModel):
    """Base of every component's options; unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid")


C = TypeVar("C", bound=ComponentConfig)


class Component(Generic[C]):
    kind: ClassVar[str] = "component"
    type_name: ClassVar[str] = ""
    Config: ClassVar[type[ComponentConfig]] = ComponentConfig

    def __init__(self, config: C, name: str = "") -> None:
        self.config = config
        self.name = name or self.type_name


class Transform(Component[C]):
    """A pure batch-to-batch step."""

    kind = "transform"

    def transform(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        raise NotImplementedError  # abstract: every registered transform overrides it


class Output(Component[C]):
    """Sends batches somewhere: a pure ``encode`` and an I/O ``write``."""

    kind = "output"

    def encode(self, batch: pa.RecordBatch) -> bytes:
        raise NotImplementedError  # abstract

    async def write(self, batch: pa.RecordBatch) -> None:
        raise NotImplementedError  # abstract

    async def close(self) -> None:
        return None


BatchSink = Callable[[Any], Awaitable[None]]


class Receiver(Component[C]):
    """Accepts data from the outside and hands it to ``sink`` (chunks or batches)."""

    kind = "receiver"

    async def run(self, sink: BatchSink) -> None:
        raise NotImplementedError  # abstract

    async def stop(self) -> None:
        return None


T = TypeVar("T", bound=type[Component[Any]])


class Registry:
    """Type name -> component class, for one kind of component."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._classes: dict[str, type[Component[Any]]] = {}

    def register(self, type_name: str) -> Callable[[T], T]:
        def decorate(cls: T) -> T:
            if type_name in self._classes and self._classes[type_name] is not cls:
                raise ValueError(f"{self.kind} type {type_name!r} is registered twice")
            cls.type_name = type_name
            self._classes[type_name] = cls
            return cls

        return decorate

    def get(self, type_name: str) -> type[Component[Any]]:
        load_builtin_components()
        try:
            return self._classes[type_name]
        except KeyError:
            known = ", ".join(sorted(self._classes)) or "none"
            raise KeyError(f"unknown {self.kind} type {type_name!r} (known: {known})") from None

    def build(self, name: str, options: dict[str, Any]) -> Component[Any]:
        options = dict(options)
        cls = self.get(options.pop("type"))
        return cls(cls.Config.model_validate(options), name=name)

    def names(self) -> list[str]:
        load_builtin_components()
        return sorted(self._classes)

    def __iter__(self) -> Iterator[tuple[str, type[Component[Any]]]]:
        load_builtin_components()
        return iter(sorted(self._classes.items()))


receivers = Registry("receiver")
transforms = Registry("transform")
outputs = Registry("output")

# Modules whose import registers built-in components. Parts add themselves here as they land.
BUILTIN_MODULES: tuple[str, ...] = (
    "kubetrail.transforms.redact",
    "kubetrail.transforms.add_fields",
    "kubetrail.outputs.file",
    "kubetrail.outputs.store",
    "kubetrail.receivers.agent",
    "kubetrail.receivers.fluent_forward",
    "kubetrail.receivers.audit_webhook",
    "kubetrail.receivers.syslog",
    "kubetrail.receivers.otlp",
    "kubetrail.receivers.elasticsearch_bulk",
    "kubetrail.detect.transform",
)
_loaded = False


def load_builtin_components() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
