"""Offline GeoIP/ASN of ``source.ip``: geoip2fast's bundled database, or MaxMind ``.mmdb`` files.

Lookups run once per UNIQUE address of a batch (``pc.unique`` + ``pc.index_in`` to spread the answers
back), and a bounded cache keeps answers across batches — audit traffic comes from few addresses.
geoip2fast ships country and AS-name data in its wheel (no download at run time) but no AS numbers:
``source.as.number`` is filled only when a MaxMind ASN database is configured.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from kubetrail.detect.config import GeoIPConfig

__all__ = ["GeoIP"]

_COUNTRY, _ASN, _ORG = "source.geo.country_iso_code", "source.as.number", "source.as.organization.name"
Answer = tuple[str | None, int | None, str | None]


class GeoIP:
    """Enriches batches in place of their null geo/AS columns."""

    def __init__(self, config: GeoIPConfig | None = None, cache_size: int = 100_000) -> None:
        self.config = config or GeoIPConfig(enabled=True)
        self._cache: OrderedDict[str, Answer] = OrderedDict()
        self._cache_size = cache_size
        self._city: Any = None
        self._asn: Any = None
        self._fast: Any = None
        if self.config.mmdb_path or self.config.asn_mmdb_path:
            import maxminddb

            if self.config.mmdb_path:
                self._city = maxminddb.open_database(self.config.mmdb_path)
            if self.config.asn_mmdb_path:
                self._asn = maxminddb.open_database(self.config.asn_mmdb_path)
        if self._city is None:
            from geoip2fast import GeoIP2Fast  # type: ignore[import-untyped]

            self._fast = GeoIP2Fast(geoip2fast_data_file="geoip2fast-asn.dat.gz")

    def lookup(self, ip: str) -> Answer:
        hit = self._cache.get(ip)
        if hit is not None:
            return hit
        answer = self._lookup(ip)
        self._cache[ip] = answer
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return answer

    def _lookup(self, ip: str) -> Answer:
        country: str | None = None
        asn: int | None = None
        org: str | None = None
        try:
            if self._city is not None:
                rec = self._city.get(ip) or {}
                country = (rec.get("country") or rec.get("registered_country") or {}).get("iso_code")
            elif self._fast is not None:
                res = self._fast.lookup(ip)
                code = getattr(res, "country_code", "") or ""
                country = code if len(code) == 2 and code.isalpha() else None
                name = getattr(res, "asn_name", "") or ""
                org = name if name and not getattr(res, "is_private", False) else None
            if self._asn is not None:
                rec = self._asn.get(ip) or {}
                asn = rec.get("autonomous_system_number")
                org = rec.get("autonomous_system_organization") or org
        except ValueError:  # not an IP address
            return (None, None, None)
        return (country, asn, org)

    def enrich(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        idx = batch.schema.get_field_index("source.ip")
        if idx < 0 or batch.num_rows == 0:
            return batch
        ips = batch.column(idx)
        unique = pc.unique(ips).drop_null()
        if len(unique) == 0:
            return batch
        answers = [self.lookup(ip) for ip in unique.to_pylist()]
        positions = pc.index_in(ips, value_set=unique)
        out = batch
        for pos, (name, typ) in enumerate(((_COUNTRY, pa.string()), (_ASN, pa.int64()), (_ORG, pa.string()))):
            values = pa.array([a[pos] for a in answers], typ)
            filled = pc.take(values, positions)
            col_idx = out.schema.get_field_index(name)
            current = out.column(col_idx)
            out = out.set_column(col_idx, out.schema.field(col_idx), pc.coalesce(current, filled))
        return out
