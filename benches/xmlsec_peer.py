#!/usr/bin/python3
"""Times libxmlsec1 (python-xmlsec) verifying the benchmark messages.

Usage: xmlsec_peer.py SIGNER_CERT_PEM ITERATIONS MESSAGE...
ITERATIONS 0: each message verified once, timed (for a very large one).

Verifies each message the way zeep.wsse.signature.verify_envelope does, with
the signer's certificate key loaded once up front:
  parse the bytes (lxml), find Header/Security/ds:Signature, register every
  element whose wsu:Id a Reference names (XPath //*[@wsu:Id=...], as zeep
  does), and call xmlsec.SignatureContext.verify, which canonicalizes and
  digests each Reference, compares the digests, canonicalizes SignedInfo and
  checks the RSA-SHA256 SignatureValue against the given key.
It does NOT check the certificate chain, the Timestamp, where the signed
elements sit (wrapping), replay, or which key the message names.

Prints one tab-separated line per message:
  name  bytes  iterations  end_to_end_us  verify_call_us
end_to_end_us: mean time of parse + lookup + register + verify (from bytes,
like wssec::verify::verify); verify_call_us: mean of the ctx.verify call alone.
Before timing, it checks that the message verifies and that a copy with one
Body character changed is refused. Needs python3-xmlsec and python3-lxml.
"""
import os
import sys
import time

import xmlsec
from lxml import etree

SOAP_NS = ("http://schemas.xmlsoap.org/soap/envelope/", "http://www.w3.org/2003/05/soap-envelope")
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
DS = "http://www.w3.org/2000/09/xmldsig#"


def prepare(data, key):
    env = etree.fromstring(data)
    soap = etree.QName(env).namespace
    if soap not in SOAP_NS:
        raise ValueError("not a SOAP envelope")
    signature = env.find(f"{{{soap}}}Header/{{{WSSE}}}Security/{{{DS}}}Signature")
    ctx = xmlsec.SignatureContext()
    for ref in signature.iterfind(f"{{{DS}}}SignedInfo/{{{DS}}}Reference"):
        target = env.xpath("//*[@wsu:Id=$id]", namespaces={"wsu": WSU}, id=ref.get("URI")[1:])[0]
        ctx.register_id(target, "Id", WSU)
    ctx.key = key
    return ctx, signature


def verify(data, key):
    ctx, signature = prepare(data, key)
    ctx.verify(signature)  # raises xmlsec.Error on any mismatch


def main():
    cert, iterations, files = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    key = xmlsec.Key.from_file(cert, xmlsec.KeyFormat.CERT_PEM)
    for path in files:
        with open(path, "rb") as f:
            data = f.read()
        if iterations == 0:
            t0 = time.perf_counter()
            verify(data, key)
            took = (time.perf_counter() - t0) * 1e6
            print(f"{os.path.basename(path)}\t{len(data)}\t1\t{took:.1f}\t{took:.1f}")
            continue
        verify(data, key)
        tampered = data.replace(b"ACME-42", b"ACME-43", 1)
        assert tampered != data
        try:
            verify(tampered, key)
        except xmlsec.Error:
            pass
        else:
            sys.exit(f"{path}: tampered copy verified")
        n = max(3, iterations if len(data) < 100_000 else iterations // 50)
        for _ in range(min(n, 10)):  # warm-up
            verify(data, key)
        t0 = time.perf_counter()
        for _ in range(n):
            verify(data, key)
        end_to_end = (time.perf_counter() - t0) / n
        call = 0.0
        for _ in range(n):
            ctx, signature = prepare(data, key)
            t = time.perf_counter()
            ctx.verify(signature)
            call += time.perf_counter() - t
        call /= n
        print(f"{os.path.basename(path)}\t{len(data)}\t{n}\t{end_to_end * 1e6:.1f}\t{call * 1e6:.1f}")


if __name__ == "__main__":
    main()
