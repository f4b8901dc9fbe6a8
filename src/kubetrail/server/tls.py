"""Server-side TLS contexts from ``TLSConfig`` (cert/key, CA, client-certificate policy = mTLS)."""

from __future__ import annotations

import ssl

from kubetrail.errors import ConfigError
from kubetrail.server.settings import TLSConfig

__all__ = ["server_context"]


def server_context(tls: TLSConfig, where: str = "tls") -> ssl.SSLContext:
    """A TLS >= 1.2 server context; ``client_auth: required`` demands a client cert signed by ``ca_file``."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file))
        if tls.ca_file is not None:
            ctx.load_verify_locations(cafile=str(tls.ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError([(where, f"cannot load certificate/key/CA: {exc}")]) from None
    if tls.client_auth != "none" and tls.ca_file is None:
        raise ConfigError([(f"{where}.ca_file", "needed when client_auth is optional or required")])
    ctx.verify_mode = {
        "none": ssl.CERT_NONE,
        "optional": ssl.CERT_OPTIONAL,
        "required": ssl.CERT_REQUIRED,
    }[tls.client_auth]
    return ctx
