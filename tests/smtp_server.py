"""A real SMTP server on loopback for the notification tests (aiosmtpd): STARTTLS with a
throwaway certificate made by openssl, AUTH required after it (PLAIN/LOGIN), a recipient it
refuses, and every message it accepted with its arrival time."""

from __future__ import annotations

import email
import email.policy
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.servers import free_port, require_binary


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (``cert.pem``, ``key.pem``); the certificate
    is its own CA, for the client's ``notify_smtp_ca_file``."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "cert.pem", directory / "key.pem"
    openssl = require_binary("openssl", "/usr/bin/openssl")
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True,
                   timeout=60)
    return cert, key


@dataclass
class Mail:
    sender: str
    recipients: list[str]
    message: EmailMessage
    at: float
    """``time.monotonic()`` when it was accepted."""
    tls: bool
    login: str | None


@dataclass
class SmtpReceiver:
    workdir: Path
    users: dict[str, str] = field(default_factory=dict)
    """Who may log in (AUTH is then required); empty: no AUTH."""
    starttls: bool = True
    refuse: set[str] = field(default_factory=set)
    """Recipients answered 550."""
    port: int = field(default_factory=free_port)
    mails: list[Mail] = field(default_factory=list)
    cert: Path | None = None
    _controller: Controller | None = None
    _changed: threading.Condition = field(default_factory=threading.Condition)

    def start(self) -> None:
        receiver = self
        context = None
        if self.starttls:
            self.cert, key = make_certificate(self.workdir / "smtp-tls")
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(self.cert, key)

        class Handler:
            async def handle_RCPT(self, server: Any, session: Any, envelope: Any,
                                  address: str, rcpt_options: list[str]) -> str:
                if address in receiver.refuse:
                    return "550 5.1.1 no such mailbox"
                envelope.rcpt_tos.append(address)
                return "250 OK"

            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                message = email.message_from_bytes(envelope.content, policy=email.policy.default)
                assert isinstance(message, EmailMessage)
                login = session.auth_data.login.decode() if isinstance(
                    session.auth_data, LoginPassword) else None
                with receiver._changed:
                    receiver.mails.append(Mail(envelope.mail_from, list(envelope.rcpt_tos),
                                               message, time.monotonic(),
                                               session.ssl is not None, login))
                    receiver._changed.notify_all()
                return "250 Message accepted"

        def authenticator(server: Any, session: Any, envelope: Any, mechanism: str,
                          auth_data: Any) -> AuthResult:
            if not isinstance(auth_data, LoginPassword):
                return AuthResult(success=False, handled=False)
            ok = receiver.users.get(auth_data.login.decode()) == auth_data.password.decode()
            return AuthResult(success=ok, handled=False, auth_data=auth_data)

        kwargs: dict[str, Any] = {}
        if self.users:
            kwargs.update(authenticator=authenticator, auth_required=True,
                          auth_require_tls=self.starttls)
        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port,
                                      tls_context=context, require_starttls=self.starttls,
                                      **kwargs)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def wait_for(self, count: int, timeout: float = 30.0) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: len(self.mails) >= count, timeout)
