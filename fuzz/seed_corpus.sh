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
mkdir -p "$CORPUS"/{reader,c14n,verify}
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
done
echo "how the verify target's policy judges the signed seeds:"
cargo run --quiet --manifest-path "$CRATE/Cargo.toml" --example fuzz_seeds -- --check "$tmp/signed" | sed 's|\t.*/|\t|'
for t in reader c14n verify; do
  echo "corpus/$t: $(ls "$CORPUS/$t" | wc -l) files"
done
