#!/usr/bin/env python3
"""Writes an unsigned SOAP message of about MIB MiB: ledger lines with
non-ASCII text and entity references, and 1.5 MiB base64 attachments, the
shape of a bulk ETL upload.

    big_soap.py PATH MIB
"""

import sys

path, mib = sys.argv[1], int(sys.argv[2])
line = ("<o:line n=\"1\"><o:sku>SKU-000042</o:sku><o:text>Z\u00fcrich &amp; Co &lt;42&gt;"
        " \u2014 qty 7</o:text></o:line>\n").encode()
blob = b"<o:attachment>" + b"QUJDREVGR0g=" * (1 << 17) + b"</o:attachment>\n"
with open(path, "wb") as f:
    f.write(b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
            b'<soapenv:Header/><soapenv:Body><o:post xmlns:o="urn:example:ledger">'
            b'<o:account>ACME-42</o:account>\n')
    written, target = 0, mib << 20
    chunk = line * 4096 + blob
    while written + len(chunk) < target:
        f.write(chunk)
        written += len(chunk)
    f.write(b"</o:post></soapenv:Body></soapenv:Envelope>\n")
