"""A Salesforce-like peer for sealgate's credential tests, written with an
independent JWT implementation (PyJWT with cryptography):

- POST /services/oauth2/token: the OAuth 2.0 JWT bearer grant (RFC 7523) as
  Salesforce documents it: the assertion's signature is verified against the
  connected app's certificate, `iss` must be the consumer key, `aud` the
  login URL, `sub` a pre-authorized user, `exp` present and at most 3
  minutes ahead. The answer has access_token, instance_url, id, no expires_in.
- POST /oauth2/cc/METHOD: client credentials (RFC 6749 4.4), the client
  authenticating with METHOD (client_secret_basic, client_secret_post or
  private_key_jwt) and no other; the answer has expires_in.
- /services/data/...: REST, answering 200 only to a current token
  (401 INVALID_SESSION_ID otherwise); /services/Soap/...: SOAP, reading the
  SessionHeader's sessionId (500 sf:INVALID_SESSION_ID fault otherwise);
  anything else: 200 with what reached it.
- /control/...: expire (every token stops working), down/up (the token
  endpoint answers 503), slow-MS/fast (it waits MS ms), expires_in-N (client
  credentials tokens say they last N s), stats.

Run: python3 token_peer.py CONFIG.json; prints "listening PORT" and serves
until killed. Every request is recorded (method, path, headers, body) for
the test to inspect.
"""

import base64
import json
import secrets
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_public_key

CFG = json.load(open(sys.argv[1]))
LOCK = threading.Lock()
STATE = {
    "tokens": {},  # token -> {"sub": ..., "grant": ...}
    "fetches": {"jwt_bearer": 0, "client_credentials": 0},
    "refused": [],
    "issued": [],
    "assertions": [],
    "requests": [],
    "down": False,
    "slow": 0,
}


def public_key(pem_path):
    data = open(pem_path, "rb").read()
    if b"CERTIFICATE" in data:
        return x509.load_pem_x509_certificate(data).public_key()
    return load_pem_public_key(data)


APP_KEY = public_key(CFG["app_cert"])
CLIENT_KEY = public_key(CFG["client_key_cert"]) if CFG.get("client_key_cert") else None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body, ctype="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        n = int(self.headers.get("content-length") or 0)
        return self.rfile.read(n) if n else b""

    def record(self, body):
        with LOCK:
            STATE["requests"].append(
                {
                    "method": self.command,
                    "path": self.path,
                    "headers": [[k.lower(), v] for k, v in self.headers.items()],
                    "body": body.decode("utf-8", "replace"),
                }
            )

    def do_GET(self):
        self.handle_any()

    def do_POST(self):
        self.handle_any()

    def handle_any(self):
        body = self.body()
        path = urllib.parse.urlsplit(self.path).path
        if path.startswith("/control/"):
            return self.control(path[len("/control/"):])
        self.record(body)
        if path == "/services/oauth2/token":
            return self.jwt_bearer(body)
        if path.startswith("/oauth2/cc/"):
            return self.client_credentials(body, path[len("/oauth2/cc/"):])
        if path.startswith("/services/data/"):
            return self.rest()
        if path.startswith("/services/Soap/"):
            return self.soap(body)
        return self.reply(200, {"path": self.path})

    def control(self, what):
        with LOCK:
            if what == "expire":
                STATE["tokens"].clear()
            elif what in ("down", "up"):
                STATE["down"] = what == "down"
            elif what.startswith("slow-"):
                STATE["slow"] = int(what[len("slow-"):]) / 1000
            elif what == "fast":
                STATE["slow"] = 0
            elif what.startswith("expires_in-"):
                CFG["expires_in"] = int(what[len("expires_in-"):])
            elif what != "stats":
                return self.reply(404, {"error": what})
            stats = {
                "fetches": STATE["fetches"],
                "refused": STATE["refused"],
                "requests": STATE["requests"],
                "tokens": list(STATE["tokens"]),
                "issued": STATE["issued"],
                "assertions": STATE["assertions"],
            }
        return self.reply(200, stats)

    def refuse(self, error, description):
        with LOCK:
            STATE["refused"].append(description)
        return self.reply(400, {"error": error, "error_description": description})

    def endpoint_state(self):
        with LOCK:
            down, slow = STATE["down"], STATE["slow"]
        if slow:
            time.sleep(slow)
        return down

    def issue(self, grant, sub, extra):
        token = "00D" + secrets.token_hex(16)
        with LOCK:
            STATE["tokens"][token] = {"sub": sub, "grant": grant}
            STATE["issued"].append(token)
            STATE["fetches"][grant] += 1
        self.reply(200, dict({"access_token": token, "token_type": "Bearer"}, **extra))

    def jwt_bearer(self, body):
        if self.endpoint_state():
            return self.reply(503, {"error": "unavailable"})
        form = urllib.parse.parse_qs(body.decode())
        if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"]:
            return self.refuse("unsupported_grant_type", "grant type not supported")
        assertion = (form.get("assertion") or [""])[0]
        try:
            claims = jwt.decode(
                assertion,
                APP_KEY,
                algorithms=["RS256"],
                audience=LOGIN,
                issuer=CFG["consumer_key"],
                options={"require": ["iss", "sub", "aud", "exp"]},
            )
        except jwt.InvalidTokenError as e:
            return self.refuse("invalid_grant", f"invalid assertion: {e}")
        if claims["exp"] > time.time() + 180 + 5:
            return self.refuse("invalid_grant", "expiration is more than 3 minutes ahead")
        with LOCK:
            STATE["assertions"].append(assertion)
        if claims["sub"] not in CFG["users"]:
            return self.refuse("invalid_grant", "user hasn't approved this consumer")
        org, user = CFG["org_id"], "005" + secrets.token_hex(6)
        self.issue(
            "jwt_bearer",
            claims["sub"],
            {
                "instance_url": CFG.get("instance_url") or LOGIN,
                "id": f"{LOGIN}/id/{org}/{user}",
                "scope": "api",
            },
        )

    def client_credentials(self, body, method):
        if self.endpoint_state():
            return self.reply(503, {"error": "unavailable"})
        form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode()).items()}
        if form.get("grant_type") != "client_credentials":
            return self.refuse("unsupported_grant_type", "grant type not supported")
        auth = self.headers.get("authorization", "")
        if method == "client_secret_basic":
            # RFC 6749 2.3.1: base64 of form-encoded id ":" form-encoded secret.
            ok = False
            if auth.startswith("Basic "):
                pair = base64.b64decode(auth[len("Basic "):]).decode()
                cid, _, secret = pair.partition(":")
                ok = (
                    urllib.parse.unquote_plus(cid) == CFG["client_id"]
                    and urllib.parse.unquote_plus(secret) == CFG["client_secret"]
                )
            ok = ok and "client_secret" not in form
        elif method == "client_secret_post":
            ok = (
                not auth
                and form.get("client_id") == CFG["client_id"]
                and form.get("client_secret") == CFG["client_secret"]
            )
        elif method == "private_key_jwt":
            ok = form.get("client_assertion_type") == (
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
            )
            with LOCK:
                STATE["assertions"].append(form.get("client_assertion", ""))
            try:
                claims = jwt.decode(
                    form.get("client_assertion", ""),
                    CLIENT_KEY,
                    algorithms=["RS256", "ES256"],
                    audience=f"http://127.0.0.1:{self.server.server_address[1]}/oauth2/cc/{method}",
                    issuer=CFG["client_id"],
                    options={"require": ["iss", "sub", "aud", "exp", "jti"]},
                )
                ok = ok and claims["sub"] == CFG["client_id"] and not auth
            except jwt.InvalidTokenError as e:
                return self.refuse("invalid_client", f"invalid client assertion: {e}")
        else:
            return self.reply(404, {"error": "no such method"})
        if not ok:
            return self.refuse("invalid_client", f"client authentication failed ({method})")
        scope = form.get("scope", "")
        self.issue(
            "client_credentials",
            CFG["client_id"],
            {"expires_in": CFG.get("expires_in", 1800), "scope": scope},
        )

    def current(self, token):
        with LOCK:
            return STATE["tokens"].get(token)

    def rest(self):
        auth = self.headers.get("authorization", "")
        who = self.current(auth[len("Bearer "):]) if auth.startswith("Bearer ") else None
        if not who:
            return self.reply(
                401, [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
            )
        return self.reply(200, {"sub": who["sub"], "grant": who["grant"], "path": self.path})

    def soap(self, body):
        text = body.decode("utf-8", "replace")
        token = None
        start = text.find("<sessionId>")
        if start >= 0:
            end = text.find("</sessionId>", start)
            token = text[start + len("<sessionId>"):end]
        who = self.current(token) if token else None
        if not who:
            fault = (
                '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"'
                ' xmlns:sf="urn:fault.partner.soap.sforce.com"><soapenv:Body><soapenv:Fault>'
                "<faultcode>sf:INVALID_SESSION_ID</faultcode>"
                "<faultstring>INVALID_SESSION_ID: Invalid Session ID found in SessionHeader:"
                " Illegal Session</faultstring></soapenv:Fault></soapenv:Body></soapenv:Envelope>"
            )
            return self.reply(500, fault.encode(), "text/xml; charset=utf-8")
        return self.reply(200, body, "text/xml; charset=utf-8")


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
# The login URL (the assertion's audience) is this server's own.
LOGIN = f"http://127.0.0.1:{server.server_address[1]}"
print("listening", server.server_address[1], flush=True)
server.serve_forever()
