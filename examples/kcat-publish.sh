#!/usr/bin/env bash
# Publish a signed data-subject request with plain kcat, as a CloudEvent in binary content mode:
# CloudEvents attributes as ce_* headers, the JSON body as the value, the request id as the key,
# and the publisher's signature in the dsr_signature header (see schemas/primitives/signing.py).
#
#   BOOTSTRAP=kafka:9092 DSR_PUBLISHER_ID=web-form DSR_PUBLISHER_KEY_FILE=web-form.pem \
#     examples/kcat-publish.sh [request.json]
#
# The key (from `dsr publishers create NAME [--hmac]`): DSR_PUBLISHER_KEY_FILE holds an Ed25519
# private key (PEM) or an HMAC secret; or give the secret itself in DSR_PUBLISHER_SECRET.
# DSR_PUBLISHER_KEY_ID is derived from the key when unset. With `dsr up` in this directory:
#   set -a; . .dsr/publisher.env; set +a
# HMAC passes the secret to openssl on its command line, where other users of this machine
# can see it for a moment; on a shared host use an Ed25519 key (read from its file).
#
# Optional: CE_SOURCE (default kcat-example), CE_ID (default a fresh UUID), KCAT (default kcat).
# Needs openssl 3. Against the embedded broker, Debian's kcat needs a newer librdkafka:
#   LD_LIBRARY_PATH=<dir with librdkafka.so.1 from the confluent-kafka wheel> (see orchestrator/intake/kcat.py);
#   `dsr up` writes it into .dsr/publisher.env when confluent-kafka is installed (pip install -e ".[kcat]").
set -euo pipefail

: "${BOOTSTRAP:?set BOOTSTRAP to the Kafka bootstrap address, e.g. BOOTSTRAP=localhost:9092}"
: "${DSR_PUBLISHER_ID:?set DSR_PUBLISHER_ID and DSR_PUBLISHER_KEY_FILE (or DSR_PUBLISHER_SECRET): request events must be signed}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
file="${1:-$here/request.json}"
topic="dsr.requests.v1"
ce_type="dsr.request.submitted.v1"
source_="${CE_SOURCE:-kcat-example}"

# Request ids are limited to [A-Za-z0-9._:-], so a plain grep finds the value safely.
request_id="$(grep -o '"request_id"[[:space:]]*:[[:space:]]*"[^"]*"' "$file" | head -n 1 | sed 's/.*"\([^"]*\)"$/\1/')"
if [[ -z "$request_id" ]]; then
  echo "kcat-publish: no \"request_id\" in $file" >&2
  exit 2
fi
ce_id="${CE_ID:-$(cat /proc/sys/kernel/random/uuid 2>/dev/null || uuidgen)}"
ce_time="$(date -u +%Y-%m-%dT%H:%M:%SZ)"

script=kcat-publish
# shellcheck source=publisher-key.sh
. "$here/publisher-key.sh"

# The canonical form: ten lines, each ending in a line feed; the body as its SHA-256.
digest="$(openssl dgst -sha256 -r "$file" | cut -d' ' -f1)"
canonical="$(mktemp)"
trap 'rm -f "$canonical"' EXIT
printf '%s\n' dsr-signature-v1 "$alg" "$DSR_PUBLISHER_ID" "$kid" "$ce_type" "$ce_id" \
  "$source_" "$ce_time" "$request_id" "$digest" >"$canonical"
if [[ "$alg" == ed25519 ]]; then
  sig="$(openssl pkeyutl -sign -inkey "$key_file" -rawin -in "$canonical" | openssl base64 -A)"
else
  sig="$(hmac <"$canonical" | openssl base64 -A)"
fi

# -k: key = request id, so one request's events stay in order on one partition.
# partitioner=murmur2_random: librdkafka's default (consistent_random, CRC32) puts a key on a
# different partition than Java clients and kafka-python (murmur2). The orchestrator keeps a
# request's state on the murmur2 partition and would have to re-route the event first.
# A file argument (without -l) is sent as one message, however many lines it has.
if ! "${KCAT:-kcat}" -P -b "$BOOTSTRAP" -t "$topic" \
  -k "$request_id" \
  -H ce_specversion=1.0 \
  -H "ce_id=$ce_id" \
  -H "ce_source=$source_" \
  -H "ce_type=$ce_type" \
  -H "ce_time=$ce_time" \
  -H content-type=application/json \
  -H "dsr_signature=v1;alg=$alg;publisher=$DSR_PUBLISHER_ID;kid=$kid;sig=$sig" \
  -X partitioner=murmur2_random \
  "$file"; then
  if [[ -z "${LD_LIBRARY_PATH:-}" ]]; then
    echo "kcat-publish: kcat failed. Against the embedded broker of \`dsr up\` it needs the librdkafka" \
      "of the confluent-kafka wheel: pip install -e '.[kcat]', restart dsr up, then source" \
      ".dsr/publisher.env again (it sets LD_LIBRARY_PATH)" >&2
  fi
  exit 1
fi
