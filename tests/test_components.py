from __future__ import annotations

import pytest

from kubetrail.components import ComponentConfig, Registry, Transform, outputs, transforms


def test_registry_rejects_double_registration() -> None:
    reg = Registry("transform")

    @reg.register("a")
    class A(Transform[ComponentConfig]):
        pass

    with pytest.raises(ValueError, match="registered twice"):

        @reg.register("a")
        class B(Transform[ComponentConfig]):
            pass


def test_unknown_type_lists_known_ones() -> None:
    with pytest.raises(KeyError, match="redact"):
        transforms.get("does-not-exist")


def test_builtins_registered() -> None:
    assert {"redact", "add_fields"} <= set(transforms.names())
    assert "file" in outputs.names()
