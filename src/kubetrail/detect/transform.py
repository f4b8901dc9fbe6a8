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
        self._data_dir = Path("kubetrail-data")

    def bind_data_dir(self, data_dir: Path) -> None:
        """The server's configured ``data_dir``: the alert store goes there unless ``alerts_db`` is set.

        Called by the server pipeline before the first batch (the transform's own options do not
        know the top-level ``data_dir``)."""
        self._data_dir = Path(data_dir)

    @property
    def detector(self) -> Detector:
        """Built on first use, so validating a configuration never compiles rules or opens files."""
        if self._detector is None:
            config = self.config
            if config.alerts_db is None:  # <data_dir>/alerts.sqlite
                self._data_dir.mkdir(parents=True, exist_ok=True)
                default_db = str(self._data_dir / "alerts.sqlite")
                config = config.model_copy(update={"alerts_db": default_db})
            self._detector = Detector(config)
        return self._detector

    def transform(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        enriched, _alerts = self.detector.process(batch)
        return enriched
