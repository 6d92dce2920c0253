#!/usr/bin/env bash
# Send a data-subject request to the intake API (`dsr intake`) with plain curl, signed with the
# publisher's key as HTTP Message Signatures (RFC 9421) with a Content-Digest (RFC 9530):
#
#   DSR_INTAKE_URL=https://dsr.example.nl DSR_PUBLISHER_KEY_FILE=web-form.pem \
#     examples/curl-publish.sh [request.json]          POST /v1/requests (202: accepted)
#   examples/curl-publish.sh --status REQUEST_ID        GET  /v1/requests/REQUEST_ID
#   DSR_INTAKE_PATH=/v1/requests/REQUEST_ID/decisions examples/curl-publish.sh decision.json
#
# The key (from `dsr publishers create NAME [--hmac]`): DSR_PUBLISHER_KEY_FILE holds an Ed25519
# private key (PEM) or an HMAC secret; or give the secret itself in DSR_PUBLISHER_SECRET.
# DSR_PUBLISHER_KEY_ID is derived from the key when unset (as for examples/kcat-publish.sh).
# HMAC passes the secret to openssl on its command line, where other users of this machine
# can see it for a moment; on a shared host use an Ed25519 key (read from its file).
#
# Prints the answer (JSON) and exits non-zero unless it is 2xx. Needs openssl 3 and curl.
set -euo pipefail

: "${DSR_INTAKE_URL:?set DSR_INTAKE_URL to the intake API, e.g. DSR_INTAKE_URL=http://127.0.0.1:8090}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
method=POST
if [[ "${1:-}" == "--status" ]]; then
  method=GET
  : "${2:?usage: curl-publish.sh --status REQUEST_ID}"
  path="/v1/requests/$2"
  file=""
else
  path="${DSR_INTAKE_PATH:-/v1/requests}"
  file="${1:-$here/request.json}"
fi

# @authority: the URL's host (lower case) and port, without the scheme's default port.
base="${DSR_INTAKE_URL%/}"
scheme="${base%%://*}"
rest="${base#*://}"
authority="${rest%%/*}"
prefix=""
[[ "$rest" == */* ]] && prefix="/${rest#*/}"
authority="$(printf '%s' "$authority" | tr '[:upper:]' '[:lower:]')"
if [[ "$scheme" == http ]]; then authority="${authority%:80}"; else authority="${authority%:443}"; fi
path="$prefix$path"

script=curl-publish
# shellcheck source=publisher-key.sh
. "$here/publisher-key.sh"

# The signature base (RFC 9421 section 2.5): one line per covered component, then the
# parameters; lines joined by a line feed, none after the last.
created="$(date +%s)"
nonce="$(openssl rand -hex 16)"
components='"@method" "@authority" "@path"'
lines=("\"@method\": $method" "\"@authority\": $authority" "\"@path\": $path")
headers=()
if [[ -n "$file" ]]; then
  digest="sha-256=:$(openssl dgst -sha256 -binary "$file" | openssl base64 -A):"
  components="$components \"content-type\" \"content-digest\""
  lines+=("\"content-type\": application/json" "\"content-digest\": $digest")
  headers+=(-H "Content-Type: application/json" -H "Content-Digest: $digest" --data-binary "@$file")
fi
params="($components);created=$created;keyid=\"$kid\";alg=\"$alg\";nonce=\"$nonce\""
lines+=("\"@signature-params\": $params")
signature_base="$(mktemp)"
trap 'rm -f "$signature_base"' EXIT
(IFS=$'\n'; printf '%s' "${lines[*]}") >"$signature_base"
if [[ "$alg" == ed25519 ]]; then
  sig="$(openssl pkeyutl -sign -inkey "$key_file" -rawin -in "$signature_base" | openssl base64 -A)"
else
  sig="$(hmac <"$signature_base" | openssl base64 -A)"
fi

"${CURL:-curl}" -sS --fail-with-body -X "$method" "$base${path#"$prefix"}" \
  -H "Signature-Input: dsr=$params" \
  -H "Signature: dsr=:$sig:" \
  "${headers[@]}"
echo
