#!/usr/bin/python3
"""An accounting service that demands WS-Security, as the one behind
policies/salesforce-outbound-to-accounting.toml: python-zeep with libxmlsec1.

Usage: accounting_service.py SERVER_CERT SERVER_KEY GATEWAY_SIGNER_CERT SIGNER_KEY SIGNER_CERT

Serves HTTPS on 127.0.0.1 at a free port and prints "LISTENING PORT". For each
POST it checks the signature with zeep.wsse.signature.verify_envelope against
the gateway's signing certificate and prints one line:
"VERIFIED PATH Notification-Ids" or "REJECTED PATH: why". A verified
Outbound Message is answered with a notificationsResponse <Ack>true</Ack>,
Body and Timestamp signed with SIGNER_KEY (BinarySecurityToken); a refused one
with an unsigned SOAP fault (HTTP 500). Two paths misbehave on purpose, for
the gateway's response check: ".../tamper-answer" changes the Ack after
signing, ".../unsigned-answer" answers unsigned.
"""
import datetime
import http.server
import ssl
import sys

import xmlsec
from lxml import etree
from zeep.wsse import utils
from zeep.wsse.signature import BinarySignature, verify_envelope

SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
OUTBOUND = "http://soap.sforce.com/2005/09/outbound"

ACK = f"""<soapenv:Envelope xmlns:soapenv="{SOAP11}"><soapenv:Body><notificationsResponse xmlns="{OUTBOUND}"><Ack>true</Ack></notificationsResponse></soapenv:Body></soapenv:Envelope>"""

FAULT = f"""<soapenv:Envelope xmlns:soapenv="{SOAP11}"><soapenv:Body><soapenv:Fault><faultcode>soapenv:Client</faultcode><faultstring>%s</faultstring></soapenv:Fault></soapenv:Body></soapenv:Envelope>"""


def timestamp():
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    return utils.WSU.Timestamp(
        utils.WSU.Created(utils.get_timestamp(now, zulu_timestamp=True)),
        utils.WSU.Expires(utils.get_timestamp(now + datetime.timedelta(seconds=300), zulu_timestamp=True)),
    )


def make_handler(gateway_cert, signer):
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def answer(self, status, body):
            self.send_response(status)
            self.send_header("Content-Type", "text/xml; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            try:
                env = etree.fromstring(body)
                verify_envelope(env, gateway_cert)
                ids = env.findall(f".//{{{OUTBOUND}}}Notification/{{{OUTBOUND}}}Id")
                if not ids:
                    raise ValueError("not an Outbound Message")
            except Exception as e:  # every failure refuses
                why = f"{type(e).__name__} {e}".replace("\n", " ")
                print(f"REJECTED {self.path}: {why}", flush=True)
                self.answer(500, (FAULT % "signature required").encode())
                return
            print(f"VERIFIED {self.path} {','.join(i.text for i in ids)}", flush=True)
            if self.path.endswith("/unsigned-answer"):
                self.answer(200, ACK.encode())
                return
            reply = etree.fromstring(ACK.encode())
            utils.get_security_header(reply).append(timestamp())
            signer.apply(reply, {})
            out = etree.tostring(reply, xml_declaration=True, encoding="UTF-8")
            if self.path.endswith("/tamper-answer"):
                out = out.replace(b"<Ack>true</Ack>", b"<Ack>false</Ack>")
            self.answer(200, out)

    return Handler


def main():
    server_cert, server_key, gateway_cert, signer_key, signer_cert = sys.argv[1:6]
    signer = BinarySignature(
        signer_key,
        signer_cert,
        signature_method=xmlsec.Transform.RSA_SHA256,
        digest_method=xmlsec.Transform.SHA256,
    )
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make_handler(gateway_cert, signer))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(server_cert, server_key)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    print(f"LISTENING {httpd.server_address[1]}", flush=True)
    httpd.serve_forever()


if __name__ == "__main__":
    main()
