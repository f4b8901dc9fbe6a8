"""GeoIP/ASN enrichment from geoip2fast's bundled data, per unique address."""

from __future__ import annotations

from kubetrail.detect.geoip import GeoIP
from kubetrail.schema import from_pylist


def test_enriches_public_addresses_only() -> None:
    geo = GeoIP()
    batch = from_pylist(
        [{"source.ip": ip} for ip in ["8.8.8.8", "10.0.0.1", None, "bogus", "8.8.8.8", "2001:4860::1"]]
    )
    out = geo.enrich(batch)
    countries = out.column("source.geo.country_iso_code").to_pylist()
    assert countries[0] == "US" and countries[4] == "US"
    assert countries[1:4] == [None, None, None]
    assert out.column("source.as.organization.name").to_pylist()[0] == "GOOGLE"
    assert len(geo._cache) == 4  # one lookup per unique address
