"""Throw-away PKI for secured test brokers: a CA, broker and client certificates, PEM files.

Everything is generated per test session with ``cryptography``: EC P-256 keys (fast to
make), private keys as encrypted PKCS#8 where a password is given. Besides the good
material there is what failure tests need: an expired client certificate, a second CA
that signed nothing the broker trusts, and a broker certificate for a wrong host name.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CertificateAuthority", "TlsMaterial", "make_tls_material"]

_LOOPBACK_NAMES = ("localhost", "127.0.0.1")
_VALIDITY = dt.timedelta(days=2)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "streamkit test kit"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _san(names: tuple[str, ...]) -> x509.SubjectAlternativeName:
    import ipaddress

    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def _key_pem(key: ec.EllipticCurvePrivateKey, password: str | None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password.encode())
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


class CertificateAuthority:
    """A self-signed CA that issues leaf certificates."""

    def __init__(self, common_name: str) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(_name(common_name))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )

    @property
    def pem(self) -> bytes:
        """The CA certificate (PEM)."""
        return _cert_pem(self.cert)

    def issue(
        self,
        common_name: str,
        *,
        hosts: tuple[str, ...] = (),
        server: bool = True,
        expired: bool = False,
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        """A key and a certificate signed by this CA.

        Args:
            common_name: the subject CN (the broker maps a client's CN to its principal).
            hosts: DNS names and IP addresses for the subject alternative name.
            server: a server certificate (else a client certificate).
            expired: valid only in the past, for failure tests.
        """
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        start, end = (
            (now - dt.timedelta(days=3), now - dt.timedelta(days=1))
            if expired
            else (now - dt.timedelta(hours=1), now + _VALIDITY)
        )
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if hosts:
            builder = builder.add_extension(_san(hosts), critical=False)
        return key, builder.sign(self.key, hashes.SHA256())


@dataclass(frozen=True)
class TlsMaterial:
    """Paths of the generated PEM files and the passwords of the encrypted keys.

    The broker key store files hold the encrypted key followed by the certificate chain
    (Kafka's ``ssl.keystore.type=PEM`` file layout).
    """

    directory: Path
    ca: Path
    wrong_ca: Path
    broker_keystore: Path
    wrong_host_keystore: Path
    broker_key_password: str
    client_cert: Path
    client_key: Path
    client_key_password: str
    client_common_name: str
    expired_client_cert: Path
    expired_client_key: Path


def make_tls_material(
    directory: Path, *, client_common_name: str = "streamkit-client"
) -> TlsMaterial:
    """Generate a CA, broker (SAN localhost/127.0.0.1) and client PEM files in ``directory``.

    Files are world-readable: the broker in its container runs as another user.
    """
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    ca = CertificateAuthority("streamkit test CA")
    wrong_ca = CertificateAuthority("streamkit untrusted CA")
    broker_password = secrets.token_urlsafe(12)
    client_password = secrets.token_urlsafe(12)

    def write(name: str, *parts: bytes) -> Path:
        path = directory / name
        path.write_bytes(b"".join(parts))
        path.chmod(0o644)
        return path

    def keystore(name: str, hosts: tuple[str, ...]) -> Path:
        key, cert = ca.issue("broker", hosts=hosts)
        return write(name, _key_pem(key, broker_password), _cert_pem(cert), ca.pem)

    client_key, client_cert = ca.issue(client_common_name, server=False)
    expired_key, expired_cert = ca.issue(client_common_name, server=False, expired=True)
    return TlsMaterial(
        directory=directory,
        ca=write("ca.pem", ca.pem),
        wrong_ca=write("wrong-ca.pem", wrong_ca.pem),
        broker_keystore=keystore("broker.keystore.pem", _LOOPBACK_NAMES),
        wrong_host_keystore=keystore("wrong-host.keystore.pem", ("broker.invalid",)),
        broker_key_password=broker_password,
        client_cert=write("client.pem", _cert_pem(client_cert)),
        client_key=write("client.key", _key_pem(client_key, client_password)),
        client_key_password=client_password,
        client_common_name=client_common_name,
        expired_client_cert=write("expired-client.pem", _cert_pem(expired_cert)),
        expired_client_key=write("expired-client.key", _key_pem(expired_key, None)),
    )
