#!/usr/bin/python3
"""Signs tests/interop/zeep_sign.py's cases at the fuzz targets' fixed time.

Usage: zeep_seed.py KEY_PEM CERT_PEM OUTDIR
Same cases as zeep_sign.py (libxmlsec1 via python-zeep), but the Timestamp is
and UsernameToken are
created at 2026-01-01T00:00:00Z (wssec_fuzz::signed_at), so the verify target,
which verifies at that instant, gets past the Timestamp check. Needs the Debian
packages python3-zeep and python3-xmlsec (system /usr/bin/python3).
"""
import datetime
import functools
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "interop"))

import zeep_sign  # noqa: E402
from zeep.wsse import utils  # noqa: E402

SIGNED_AT = datetime.datetime(2026, 1, 1, 0, 0, 0)


def fixed_timestamp():
    later = SIGNED_AT + datetime.timedelta(seconds=zeep_sign.TTL)
    return utils.WSU.Timestamp(
        utils.WSU.Created(utils.get_timestamp(SIGNED_AT, zulu_timestamp=True)),
        utils.WSU.Expires(utils.get_timestamp(later, zulu_timestamp=True)),
    )


if __name__ == "__main__":
    zeep_sign.timestamp = fixed_timestamp
    zeep_sign.UsernameToken = functools.partial(zeep_sign.UsernameToken, created=SIGNED_AT)
    zeep_sign.main()
