#!/usr/bin/python3
"""Signs SOAP messages with python-zeep (zeep.wsse.signature, libxmlsec1 inside).

Usage: zeep_sign.py KEY_PEM CERT_PEM OUTDIR

Writes one file per case into OUTDIR and prints their names. Every case has a
wsu:Timestamp (zeep signs Body and, when one exists, the Timestamp), RSA-SHA256
and SHA-256 digests unless the name says sha1. Run with the system python3: the
Debian packages python3-zeep and python3-xmlsec provide the modules.
"""
import datetime
import os
import sys

import xmlsec
from lxml import etree
from zeep.wsse import utils
from zeep.wsse.signature import BinarySignature, Signature
from zeep.wsse.username import UsernameToken

TTL = 300
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"

ORDER_11 = f"""<soapenv:Envelope xmlns:soapenv="{SOAP11}" xmlns:urn="urn:example:orders">
  <soapenv:Header/>
  <soapenv:Body>
    <urn:createOrder>
      <urn:account>ACME-42</urn:account>
      <urn:amount currency="EUR">100.00</urn:amount>
    </urn:createOrder>
  </soapenv:Body>
</soapenv:Envelope>"""

ORDER_12 = f"""<env:Envelope xmlns:env="{SOAP12}">
  <env:Header>
    <wsa:To xmlns:wsa="http://www.w3.org/2005/08/addressing">https://accounting.example/orders</wsa:To>
  </env:Header>
  <env:Body>
    <o:createOrder xmlns:o="urn:example:orders"><o:account>ACME-42</o:account></o:createOrder>
  </env:Body>
</env:Envelope>"""

# Shape of a Salesforce Outbound Message (notifications call), no Header,
# pretty-printed so the Body carries whitespace text nodes.
OUTBOUND = f"""<soapenv:Envelope xmlns:soapenv="{SOAP11}" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
 <soapenv:Body>
  <notifications xmlns="http://soap.sforce.com/2005/09/outbound">
   <OrganizationId>00D000000000062EAA</OrganizationId>
   <ActionId>04k000000000001AAA</ActionId>
   <SessionId xsi:nil="true"/>
   <EnterpriseUrl>https://acme.my.salesforce.com/services/Soap/c/63.0/00D000000000062</EnterpriseUrl>
   <PartnerUrl>https://acme.my.salesforce.com/services/Soap/u/63.0/00D000000000062</PartnerUrl>
   <Notification>
    <Id>04l000000000001AAA</Id>
    <sObject xsi:type="sf:Account" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">
     <sf:Id>001000000000001AAA</sf:Id>
     <sf:Name>Acme &amp; Söhne GmbH</sf:Name>
     <sf:Description>line one
	line two with a tab &lt;not a tag&gt;</sf:Description>
    </sObject>
   </Notification>
  </notifications>
 </soapenv:Body>
</soapenv:Envelope>"""


def large_body():
    rows = "".join(
        f'\n      <urn:line n="{i}"><urn:sku>SKU-{i:06d}</urn:sku>'
        f"<urn:text>Zürich &amp; Co &lt;{i}&gt; — qty {i % 17}</urn:text></urn:line>"
        for i in range(4000)
    )
    return ORDER_11.replace(
        "<urn:account>ACME-42</urn:account>",
        f"<urn:account>ACME-42</urn:account>{rows}",
    )


def timestamp():
    now = datetime.datetime.utcnow()
    later = now + datetime.timedelta(seconds=TTL)
    return utils.WSU.Timestamp(
        utils.WSU.Created(utils.get_timestamp(now, zulu_timestamp=True)),
        utils.WSU.Expires(utils.get_timestamp(later, zulu_timestamp=True)),
    )


def sign(xml, signer, plugins=()):
    env = etree.fromstring(xml.encode("utf-8"))
    for p in plugins:
        p.apply(env, {})
    if not plugins:
        utils.get_security_header(env).append(timestamp())
    signer.apply(env, {})
    return etree.tostring(env, xml_declaration=True, encoding="UTF-8")


def main():
    key, cert, outdir = sys.argv[1:4]
    sha256 = dict(signature_method=xmlsec.Transform.RSA_SHA256, digest_method=xmlsec.Transform.SHA256)
    bst = BinarySignature(key, cert, **sha256)
    issuer = Signature(key, cert, **sha256)
    cases = {
        "soap11-bst.xml": (ORDER_11, bst, ()),
        "soap11-issuer-serial.xml": (ORDER_11, issuer, ()),
        "soap12-bst.xml": (ORDER_12, bst, ()),
        "soap12-issuer-serial.xml": (ORDER_12, issuer, ()),
        "outbound-bst.xml": (OUTBOUND, bst, ()),
        "large-bst.xml": (large_body(), bst, ()),
        # zeep's defaults: RSA-SHA1 and SHA-1 digests.
        "soap11-sha1.xml": (ORDER_11, BinarySignature(key, cert), ()),
        # UsernameToken (PasswordDigest, zulu Created) carrying the Timestamp, then signed.
        "soap11-username-bst.xml": (
            ORDER_11,
            bst,
            (UsernameToken("etl", "s3cret-pw", use_digest=True, timestamp_token=timestamp(), zulu_timestamp=True),),
        ),
    }
    for name, (xml, signer, plugins) in cases.items():
        with open(os.path.join(outdir, name), "wb") as f:
            f.write(sign(xml, signer, plugins))
        print(name)


if __name__ == "__main__":
    main()
