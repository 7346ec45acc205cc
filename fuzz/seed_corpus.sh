#!/usr/bin/env bash
# Seeds fuzz/corpus/{reader,c14n,verify} from the test vectors and from signed
# messages: the crate's own signer (the main crate's examples/fuzz_seeds.rs) and, when the
# Debian packages python3-zeep/python3-xmlsec are installed, zeep (libxmlsec1).
# Signed messages use the fixed fuzz PKI and time (src/lib.rs), so they verify
# in the `verify` target. Idempotent; corpus/ is gitignored.
set -euo pipefail
cd "$(dirname "$0")"
CRATE=..
CORPUS=corpus
MAX_SEED=65536   # keep seeds small: run.sh fuzzes with -max_len=$MAX_SEED
mkdir -p "$CORPUS"/{reader,c14n,verify,sign}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# 1. Test vectors (c14n suites, XML attacks) for the parser targets.
find "$CRATE/tests/vectors" -type f ! -name '*.md' | while read -r f; do
  name=$(echo "${f#"$CRATE/tests/vectors/"}" | tr '/' '_')
  cp "$f" "$CORPUS/reader/$name"
  cp "$f" "$CORPUS/c14n/$name"
done

# 2. Messages signed by sealgate's signer (an example of the main crate, so it
#    reuses the main crate's build rather than compiling everything again here).
cargo run --quiet --manifest-path "$CRATE/Cargo.toml" \
  --example fuzz_seeds -- "$tmp/signed" "$tmp/pki"

# 3. Messages signed by zeep/libxmlsec1, if available.
if /usr/bin/python3 -c "import xmlsec, zeep.wsse.signature" 2>/dev/null; then
  /usr/bin/python3 zeep_seed.py "$tmp/pki/leaf-key.pem" "$tmp/pki/leaf.pem" "$tmp/signed" >/dev/null
  for f in "$tmp"/signed/*.xml; do
    case "$(basename "$f")" in signed-*) ;; *) mv "$f" "$(dirname "$f")/zeep-$(basename "$f")" ;; esac
  done
else
  echo "seed_corpus.sh: python3-zeep/python3-xmlsec missing, no zeep seeds" >&2
fi

for f in "$tmp"/signed/*.xml; do
  [ "$(stat -c %s "$f")" -le $MAX_SEED ] || continue
  for t in reader c14n verify; do cp "$f" "$CORPUS/$t/"; done
  # sign: the choice byte first (4: BST, replace the Security header).
  { printf '\4'; cat "$f"; } > "$CORPUS/sign/$(basename "$f")"
done
# 4. Unsigned messages for the sign target, one per key reference (choice 0..3).
i=0
for m in \
  '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><p:Pay xmlns:p="urn:p">10</p:Pay></s:Body></s:Envelope>' \
  '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Header/><s:Body xmlns:t="urn:t"><t:a xsi:type="t:X" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">é &amp; ü</t:a></s:Body></s:Envelope>' \
  '<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Header><w:To xmlns:w="http://www.w3.org/2005/08/addressing">x</w:To></e:Header><e:Body><o/></e:Body></e:Envelope>' \
  '<Envelope xmlns="http://schemas.xmlsoap.org/soap/envelope/" xmlns:wsu="urn:not-wsu"><Body wsu:Id="b"><x wsu:a="1"/></Body></Envelope>'; do
  printf "\\$(printf '%03o' $((i % 4)))%s" "$m" > "$CORPUS/sign/unsigned-$i.xml"
  i=$((i + 1))
done

echo "how the verify target's policy judges the signed seeds:"
cargo run --quiet --manifest-path "$CRATE/Cargo.toml" --example fuzz_seeds -- --check "$tmp/signed" | sed 's|\t.*/|\t|'
for t in reader c14n verify sign; do
  echo "corpus/$t: $(ls "$CORPUS/$t" | wc -l) files"
done
