#!/usr/bin/python3
"""Verifies a signed SOAP message the way python-zeep does (libxmlsec1 inside).

Usage: xmlsec_verify.py CERT_PEM MESSAGE [CERT_PEM MESSAGE]...
Prints one line per message, "ACCEPTED MESSAGE" or "REJECTED MESSAGE: why",
and exits 0 only when every message was accepted.
"""
import sys

from lxml import etree
from zeep.exceptions import SignatureVerificationFailed
from zeep.wsse.signature import verify_envelope


def verdict(cert, path):
    try:
        with open(path, "rb") as f:
            env = etree.fromstring(f.read())
        verify_envelope(env, cert)
    except (SignatureVerificationFailed, Exception) as e:  # any failure refuses
        return "REJECTED %s: %s %s" % (path, type(e).__name__, e)
    return "ACCEPTED %s" % path


def main():
    args = sys.argv[1:]
    lines = [verdict(c, p) for c, p in zip(args[::2], args[1::2])]
    print("\n".join(lines))
    sys.exit(0 if all(l.startswith("ACCEPTED") for l in lines) else 1)


if __name__ == "__main__":
    main()
