#!/usr/bin/python3
"""Verifies a signed SOAP message the way python-zeep does (libxmlsec1 inside).

Usage: xmlsec_verify.py CERT_PEM MESSAGE
Prints ACCEPTED (exit 0) or REJECTED (exit 1).
"""
import sys

from lxml import etree
from zeep.exceptions import SignatureVerificationFailed
from zeep.wsse.signature import verify_envelope


def main():
    cert, path = sys.argv[1:3]
    with open(path, "rb") as f:
        env = etree.fromstring(f.read())
    try:
        verify_envelope(env, cert)
    except (SignatureVerificationFailed, IndexError, AttributeError) as e:
        print("REJECTED", type(e).__name__)
        sys.exit(1)
    print("ACCEPTED")


if __name__ == "__main__":
    main()
