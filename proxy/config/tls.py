"""TLS to a backend: the ``backends.NAME.tls`` keys, and the client ``SSLContext`` they make.

The files are read when the config is loaded, so that a missing or unreadable
CA, certificate or key is a config error with its key path (at ``turnout
check`` and on reload), never a failure at the first request. The data plane
builds one context per backend pool from the same settings
(``proxy.http.pool``), not one per connection.
"""

from __future__ import annotations

import os
import ssl
from typing import Annotated

from pydantic import AfterValidator, model_validator

from proxy.config.base import StrictModel


class EncryptedKey(Exception):
    """Raised from the pass phrase callback: turnout does not take pass phrases."""


def _refuse_pass_phrase() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal: a hung start, not an error.
    raise EncryptedKey


def _readable(path: str) -> str:
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    if os.path.isdir(path):
        raise ValueError(f"{path} is a directory, expected a PEM file")
    return path


def _ca_bundle(path: str) -> str:
    try:
        ssl.create_default_context().load_verify_locations(cafile=path)
    except ssl.SSLError as exc:
        raise ValueError(f"{path} holds no usable CA certificate (PEM): {exc.reason}") from None
    return path


PemFile = Annotated[str, AfterValidator(_readable)]
CaFile = Annotated[str, AfterValidator(_readable), AfterValidator(_ca_bundle)]


class BackendTls(StrictModel):
    """``tls: {ca_file, verify, server_name, cert_file, key_file}`` of an https:// backend."""

    ca_file: CaFile | None = None
    """CA certificates (PEM) the backend's certificate must chain to; the system's
    CAs when unset."""
    verify: bool = True
    """``false`` accepts any certificate and any name (logged as a warning at start)."""
    server_name: str | None = None
    """The name sent as SNI and verified against the certificate; the URL's host when unset."""
    cert_file: PemFile | None = None
    """Client certificate (PEM, may hold the key too) for backends that require mTLS."""
    key_file: PemFile | None = None
    """The client certificate's private key (PEM, not encrypted)."""

    @model_validator(mode="after")
    def _client_certificate(self) -> BackendTls:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file needs cert_file (the client certificate)")
        if self.cert_file is not None:
            load_client_certificate(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), self)
        return self

    def files(self) -> tuple[str, ...]:
        return tuple(f for f in (self.ca_file, self.cert_file, self.key_file) if f is not None)


def load_client_certificate(context: ssl.SSLContext, tls: BackendTls) -> None:
    """Load the mTLS certificate into ``context``; ``ValueError`` names the files and why."""
    assert tls.cert_file is not None
    files = f"cert_file {tls.cert_file}"
    if tls.key_file is not None:
        files += f" and key_file {tls.key_file}"
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file, password=_refuse_pass_phrase)
    except EncryptedKey:
        raise ValueError(f"{files}: the key is encrypted; give an unencrypted key") from None
    except ssl.SSLError as exc:
        raise ValueError(f"{files} do not load: {exc.reason or exc}") from None
    except OSError as exc:
        raise ValueError(f"{files} do not load: {exc.strerror or exc}") from None


def client_context(tls: BackendTls | None) -> ssl.SSLContext:
    """The client context for one backend (``None``: verify against the system's CAs).

    Raises ``ValueError`` when a file changed since the config was loaded and no
    longer loads.
    """
    tls = tls or BackendTls()
    if tls.verify:
        try:
            context = ssl.create_default_context(cafile=tls.ca_file)
        except (ssl.SSLError, OSError) as exc:
            raise ValueError(f"ca_file {tls.ca_file} does not load: {exc}") from None
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if tls.cert_file is not None:
        load_client_certificate(context, tls)
    return context
