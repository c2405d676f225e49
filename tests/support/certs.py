"""Real certificates for TLS tests, made by ``trustme``: a test CA, server and client
certificates written to PEM files, and server-side SSL contexts for aiohttp."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class CertFiles:
    """PEM files of one certificate: the chain (leaf first) and its private key."""

    cert: str
    key: str


class TestPki:
    """A CA and the certificates it issued, as files under ``folder``."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.ca = trustme.CA()
        self.ca_file = str(folder / "ca.pem")
        self.ca.cert_pem.write_to_path(self.ca_file)

    def issue(self, name: str, *identities: str) -> CertFiles:
        """A certificate for ``identities`` (host names, IP addresses or e-mail names)."""
        cert = self.ca.issue_cert(*identities)
        files = CertFiles(str(self.folder / f"{name}.pem"), str(self.folder / f"{name}.key"))
        cert.cert_chain_pems[0].write_to_path(files.cert)
        for pem in cert.cert_chain_pems[1:]:
            pem.write_to_path(files.cert, append=True)
        cert.private_key_pem.write_to_path(files.key)
        return files

    def server_context(
        self, files: CertFiles, *, require_client_cert: bool = False
    ) -> ssl.SSLContext:
        """What a backend serves with; optionally refusing clients without a cert of this CA."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(files.cert, files.key)
        if require_client_cert:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(cafile=self.ca_file)
        return context
