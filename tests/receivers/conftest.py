from __future__ import annotations

import pytest

from tests.server.certs import Certs, make_certs


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, made once per session."""
    return make_certs(tmp_path_factory.mktemp("certs"))
