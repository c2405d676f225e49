"""Backend keys: ``tls`` (checked when the config is loaded, files included) and
``max_connections``."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from proxy.config.loader import ConfigError, parse_config
from proxy.config.models import BackendConfig
from tests.support.certs import TestPki


def config_errors(new_backend: str) -> list[str]:
    """Every issue of a config whose ``new`` backend is the given YAML mapping body."""
    text = textwrap.dedent(
        """\
        backends:
          legacy: {url: "http://127.0.0.1:8000"}
          new:
        """
    ) + textwrap.indent(textwrap.dedent(new_backend), "    ")
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "c.yaml")
    return [str(issue) for issue in caught.value.issues]


@pytest.fixture
def pki(tmp_path: Path) -> TestPki:
    return TestPki(tmp_path)


def test_defaults() -> None:
    backend = BackendConfig(url="https://new.internal")
    assert backend.tls is None
    assert backend.max_connections == 1024
    assert backend.max_idle_connections == 512


def test_tls_keys_load(pki: TestPki) -> None:
    client = pki.issue("client", "turnout@example.org")
    backend = BackendConfig(
        url="https://127.0.0.1:8443",
        tls={
            "ca_file": pki.ca_file,
            "server_name": "new.internal",
            "cert_file": client.cert,
            "key_file": client.key,
        },
    )
    assert backend.tls is not None
    assert backend.tls.verify is True
    assert backend.tls.server_name == "new.internal"


def test_tls_on_a_plain_http_backend_is_an_error() -> None:
    assert config_errors(
        """\
        url: http://127.0.0.1:3000
        tls: {verify: false}
        """
    ) == [
        "c.yaml:3: backends.new: tls is set but the url is http://127.0.0.1:3000: "
        "write https:// to speak TLS to this backend"
    ]


def test_a_missing_ca_file_is_an_error_at_its_key(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    assert config_errors(
        f"""\
        url: https://127.0.0.1:3000
        tls:
          ca_file: {missing}
        """
    ) == [f"c.yaml:6: backends.new.tls.ca_file: cannot read {missing}: No such file or directory"]


def test_a_ca_file_that_is_not_pem_is_an_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    [error] = config_errors(
        f"""\
        url: https://127.0.0.1:3000
        tls: {{ca_file: {junk}}}
        """
    )
    assert error.startswith(f"c.yaml:5: backends.new.tls.ca_file: {junk} holds no usable CA ")


def test_a_key_that_does_not_match_the_certificate_is_an_error(pki: TestPki) -> None:
    one, other = pki.issue("one", "a@example.org"), pki.issue("other", "b@example.org")
    [error] = config_errors(
        f"""\
        url: https://127.0.0.1:3000
        tls: {{cert_file: {one.cert}, key_file: {other.key}}}
        """
    )
    assert error.startswith(
        f"c.yaml:5: backends.new.tls: cert_file {one.cert} and key_file {other.key} do not load:"
    )


def test_a_key_file_needs_a_cert_file(pki: TestPki) -> None:
    client = pki.issue("client", "turnout@example.org")
    assert config_errors(
        f"""\
        url: https://127.0.0.1:3000
        tls: {{key_file: {client.key}}}
        """
    ) == ["c.yaml:5: backends.new.tls: key_file needs cert_file (the client certificate)"]


def test_an_encrypted_key_is_refused_rather_than_prompted_for(pki: TestPki) -> None:
    """OpenSSL would ask for the pass phrase on the terminal: a hang, not an error."""
    client = pki.issue("client", "turnout@example.org")
    key = serialization.load_pem_private_key(Path(client.key).read_bytes(), password=None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    Path(client.key).write_bytes(encrypted)
    [error] = config_errors(
        f"""\
        url: https://127.0.0.1:3000
        tls: {{cert_file: {client.cert}, key_file: {client.key}}}
        """
    )
    assert "encrypted" in error


def test_max_connections_must_be_positive() -> None:
    assert config_errors(
        """\
        url: http://127.0.0.1:3000
        max_connections: 0
        """
    ) == ["c.yaml:5: backends.new.max_connections: must be greater than or equal to 1, got 0"]
