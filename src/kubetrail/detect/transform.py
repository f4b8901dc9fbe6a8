"""The ``detect`` transform: streaming detection as a pipeline step.

``transform(batch)`` returns the batch enriched (GeoIP, threat intel) and records the alerts it
raised in the alert store (and delivers new ones to the log and the webhook). The options are the
``detect`` section's (:class:`kubetrail.detect.config.DetectConfig`).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from kubetrail.components import ComponentConfig, Transform, transforms
from kubetrail.config import register_section
from kubetrail.detect.config import DetectConfig
from kubetrail.detect.detector import Detector

__all__ = ["DetectTransform"]

register_section("detect", DetectConfig)


class DetectTransformConfig(DetectConfig, ComponentConfig):
    """Options of the ``detect`` transform (the same as the ``detect`` section)."""


@transforms.register("detect")
class DetectTransform(Transform[DetectTransformConfig]):
    Config = DetectTransformConfig

    def __init__(self, config: DetectTransformConfig, name: str = "") -> None:
        super().__init__(config, name)
        self._detector: Detector | None = None

    @property
    def detector(self) -> Detector:
        """Built on first use, so validating a configuration never compiles rules or opens files."""
        if self._detector is None:
            config = self.config
            if config.alerts_db is None:  # the default data_dir: where `kubetrail alerts` looks
                default_db = str(Path("kubetrail-data") / "alerts.sqlite")
                config = config.model_copy(update={"alerts_db": default_db})
            self._detector = Detector(config)
        return self._detector

    def transform(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        enriched, _alerts = self.detector.process(batch)
        return enriched
