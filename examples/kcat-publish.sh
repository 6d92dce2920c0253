#!/usr/bin/env bash
# Publish a data-subject request with plain kcat, as a CloudEvent in binary content mode:
# CloudEvents attributes as ce_* headers, the JSON body as the value, the request id as the key.
#
#   BOOTSTRAP=kafka:9092 examples/kcat-publish.sh [request.json]
#
# Optional: CE_SOURCE (default kcat-example), CE_ID (default a fresh UUID), KCAT (default kcat).
# Against the embedded broker, Debian's kcat needs a newer librdkafka:
#   LD_LIBRARY_PATH=<dir with librdkafka.so.1 from the confluent-kafka wheel> (see orchestrator/kcat.py)
set -euo pipefail

: "${BOOTSTRAP:?set BOOTSTRAP to the Kafka bootstrap address, e.g. BOOTSTRAP=localhost:9092}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
file="${1:-$here/request.json}"
topic="dsr.requests.v1"

# Request ids are limited to [A-Za-z0-9._:-], so a plain grep finds the value safely.
request_id="$(grep -o '"request_id"[[:space:]]*:[[:space:]]*"[^"]*"' "$file" | head -n 1 | sed 's/.*"\([^"]*\)"$/\1/')"
if [[ -z "$request_id" ]]; then
  echo "kcat-publish: no \"request_id\" in $file" >&2
  exit 2
fi
ce_id="${CE_ID:-$(cat /proc/sys/kernel/random/uuid 2>/dev/null || uuidgen)}"
ce_time="$(date -u +%Y-%m-%dT%H:%M:%SZ)"

# -k: key = request id, so one request's events stay in order on one partition.
# partitioner=murmur2_random: librdkafka's default (consistent_random, CRC32) puts a key on a
# different partition than Java clients and kafka-python (murmur2). The orchestrator keeps a
# request's state on the murmur2 partition and would have to re-route the event first.
# A file argument (without -l) is sent as one message, however many lines it has.
exec "${KCAT:-kcat}" -P -b "$BOOTSTRAP" -t "$topic" \
  -k "$request_id" \
  -H ce_specversion=1.0 \
  -H "ce_id=$ce_id" \
  -H "ce_source=${CE_SOURCE:-kcat-example}" \
  -H ce_type=dsr.request.submitted.v1 \
  -H "ce_time=$ce_time" \
  -H content-type=application/json \
  -X partitioner=murmur2_random \
  "$file"
