# Sourced by kcat-publish.sh and curl-publish.sh: the publisher's key as they sign with it.
# Sets `alg` (ed25519 or hmac-sha256), `kid` (DSR_PUBLISHER_KEY_ID, or derived from the key as
# `dsr publishers` derives it), `key_file`, and the functions `b64url` and (HMAC) `hmac`.
# Needs `script` (the calling script's name, for messages) and openssl 3.

b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
key_file="${DSR_PUBLISHER_KEY_FILE:-}"
if [[ -n "$key_file" ]] && grep -q -- '-----BEGIN' "$key_file"; then
  alg=ed25519
  # Key id: the RFC 7638 thumbprint of the public key, as `dsr publishers` derives it.
  x="$(openssl pkey -in "$key_file" -pubout -outform DER | tail -c 32 | b64url)"
  kid="${DSR_PUBLISHER_KEY_ID:-ed25519-$(printf '{"crv":"Ed25519","kty":"OKP","x":"%s"}' "$x" \
    | openssl dgst -sha256 -binary | b64url | cut -c1-16)}"
else
  alg=hmac-sha256
  if [[ -n "$key_file" ]]; then secret="$(<"$key_file")"; else secret="${DSR_PUBLISHER_SECRET:-}"; fi
  secret="${secret#"${secret%%[![:space:]]*}"}"   # trim, as the verifiers do
  secret="${secret%"${secret##*[![:space:]]}"}"
  if [[ ${#secret} -lt 32 ]]; then
    echo "$script: the HMAC secret needs at least 32 characters (DSR_PUBLISHER_KEY_FILE or DSR_PUBLISHER_SECRET)" >&2
    exit 2
  fi
  hmac() { openssl dgst -sha256 -mac HMAC -macopt "key:$secret" -binary; }
  kid="${DSR_PUBLISHER_KEY_ID:-hmac-$(printf '%s' 'dsr publisher key id' | hmac | b64url | cut -c1-16)}"
fi
