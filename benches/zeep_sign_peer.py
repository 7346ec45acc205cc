#!/usr/bin/python3
"""Times python-zeep (libxmlsec1) signing the benchmark messages.

Usage: zeep_sign_peer.py SIGNER_KEY_PEM SIGNER_CERT_PEM ITERATIONS MESSAGE...

For each unsigned message: parse it (lxml), add a wsu:Timestamp to a new
Security header, sign Body and Timestamp with zeep.wsse.signature.BinarySignature
(RSA-SHA256, SHA-256 digests, exclusive C14N, BinarySecurityToken) and
serialize — what benches/wssec_sign.rs times for sealgate, less the
re-verification sealgate does of its own output. Prints one tab-separated
line per message: name  bytes  iterations  mean_us
Needs the Debian packages python3-zeep and python3-xmlsec.
"""
import datetime
import os
import sys
import time

import xmlsec
from lxml import etree
from zeep.wsse import utils
from zeep.wsse.signature import BinarySignature


def sign(data, signer):
    env = etree.fromstring(data)
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    utils.get_security_header(env).append(
        utils.WSU.Timestamp(
            utils.WSU.Created(utils.get_timestamp(now, zulu_timestamp=True)),
            utils.WSU.Expires(utils.get_timestamp(now + datetime.timedelta(seconds=300), zulu_timestamp=True)),
        )
    )
    signer.apply(env, {})
    return etree.tostring(env)


def main():
    key, cert, iterations, files = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
    signer = BinarySignature(
        key, cert, signature_method=xmlsec.Transform.RSA_SHA256, digest_method=xmlsec.Transform.SHA256
    )
    for path in files:
        with open(path, "rb") as f:
            data = f.read()
        sign(data, signer)
        n = iterations if len(data) < 100_000 else max(1, iterations // 50)
        start = time.perf_counter()
        for _ in range(n):
            sign(data, signer)
        mean_us = (time.perf_counter() - start) / n * 1e6
        print(f"{os.path.basename(path)}\t{len(data)}\t{n}\t{mean_us:.1f}", flush=True)


if __name__ == "__main__":
    main()
