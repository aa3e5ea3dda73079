"""A local stand-in for Google's OAuth 2.0 / OpenID Connect endpoints.

No network reaches Google from here, so tests point allauth's Google provider (the real
library code, unchanged) at this server, which speaks the documented protocol
(https://developers.google.com/identity/openid-connect/openid-connect): the
authorization endpoint answers with a redirect carrying a one-time code and the state;
the token endpoint checks the client, the redirect URI and the PKCE verifier and
returns an access token with an RS256-signed id_token issued as
https://accounts.google.com; the userinfo and certificate endpoints answer as Google's
do. The identity it vouches for is whatever the test sets in `identity`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

ISSUER = "https://accounts.google.com"
AUTHORIZE_PATH = "/o/oauth2/v2/auth"
TOKEN_PATH = "/token"
USERINFO_PATH = "/oauth2/v2/userinfo"
CERTS_PATH = "/oauth2/v1/certs"


def _self_signed(key: rsa.RSAPrivateKey) -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "google-stand-in")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


class _Handler(BaseHTTPRequestHandler):
    server: GoogleStandIn

    def log_message(self, format: str, *args: object) -> None:
        return None

    def _json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == AUTHORIZE_PATH:
            self._authorize(query)
        elif url.path == USERINFO_PATH:
            self._userinfo()
        elif url.path == CERTS_PATH:
            self._json(200, {self.server.kid: self.server.certificate})
        else:
            self._json(404, {"error": "not_found"})

    def do_POST(self) -> None:
        if urlsplit(self.path).path != TOKEN_PATH:
            self._json(404, {"error": "not_found"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        self._token(form)

    def _authorize(self, query: dict[str, str]) -> None:
        server = self.server
        server.authorize_requests.append(query)
        if query.get("client_id") != server.client_id or query.get("response_type") != "code":
            self._json(400, {"error": "invalid_request"})
            return
        if "openid" not in query.get("scope", "").split():
            self._json(400, {"error": "invalid_scope"})
            return
        code = secrets.token_urlsafe(24)
        server.codes[code] = {
            "redirect_uri": query["redirect_uri"],
            "challenge": query.get("code_challenge"),
            "nonce": query.get("nonce"),
            "identity": dict(server.identity),
        }
        target = query["redirect_uri"] + "?" + urlencode({"code": code, "state": query["state"]})
        self.send_response(302)
        self.send_header("Location", target)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _client_ok(self, form: dict[str, str]) -> bool:
        client_id, secret = form.get("client_id"), form.get("client_secret")
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            client_id, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
        return client_id == self.server.client_id and secret == self.server.client_secret

    def _token(self, form: dict[str, str]) -> None:
        server = self.server
        grant = server.codes.pop(form.get("code", ""), None)
        if not self._client_ok(form):
            self._json(401, {"error": "invalid_client"})
            return
        if (
            form.get("grant_type") != "authorization_code"
            or grant is None
            or form.get("redirect_uri") != grant["redirect_uri"]
        ):
            self._json(400, {"error": "invalid_grant"})
            return
        if grant["challenge"]:
            digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
            if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != grant["challenge"]:
                self._json(400, {"error": "invalid_grant", "error_description": "PKCE"})
                return
        access_token = secrets.token_urlsafe(24)
        identity = grant["identity"]
        server.access_tokens[access_token] = identity
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "azp": server.client_id,
            "aud": server.client_id,
            "iat": now,
            "exp": now + 3600,
            **({"nonce": grant["nonce"]} if grant["nonce"] else {}),
            **identity,
        }
        id_token = jwt.encode(
            claims, server.private_pem, algorithm="RS256", headers={"kid": server.kid}
        )
        self._json(
            200,
            {
                "access_token": access_token,
                "expires_in": 3599,
                "token_type": "Bearer",
                "scope": "openid email profile",
                "id_token": id_token,
            },
        )

    def _userinfo(self) -> None:
        auth = self.headers.get("Authorization", "")
        identity = self.server.access_tokens.get(auth.removeprefix("Bearer "))
        if identity is None:
            self._json(401, {"error": "invalid_token"})
            return
        self._json(
            200,
            {
                "id": identity["sub"],
                "email": identity.get("email"),
                "verified_email": identity.get("email_verified", False),
                "name": identity.get("name", ""),
                "given_name": identity.get("given_name", ""),
                "family_name": identity.get("family_name", ""),
            },
        )


class GoogleStandIn(ThreadingHTTPServer):
    """The stand-in on 127.0.0.1:`port`; `identity` is the account that signs in next."""

    daemon_threads = True

    def __init__(self, port: int, *, client_id: str, client_secret: str) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.client_id = client_id
        self.client_secret = client_secret
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.private_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        self.certificate = _self_signed(key)
        self.kid = secrets.token_hex(8)
        self.identity: dict[str, Any] = {}
        self.codes: dict[str, dict[str, Any]] = {}
        self.access_tokens: dict[str, dict[str, Any]] = {}
        self.authorize_requests: list[dict[str, str]] = []

    def start(self) -> GoogleStandIn:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def sign_in_as(self, *, email: str, verified: bool = True, sub: str | None = None) -> None:
        """The Google account the next authorization is for."""
        self.identity = {
            "sub": sub or str(int(hashlib.sha256(email.encode()).hexdigest()[:15], 16)),
            "email": email,
            "email_verified": verified,
            "name": email.split("@")[0].title(),
            "given_name": email.split("@")[0].title(),
        }
