#!/usr/bin/env bash
# Mint a development JWT (HS256) for the embedded profile of `make run`.
#
#   scripts/devtoken.sh SUB ROLES [TENANT_ID]
#     SUB        the `sub` claim (who you are: "alice")
#     ROLES      comma-separated: platform-admin, compliance, tenant-admin, tenant-operator,
#                tenant-viewer
#     TENANT_ID  the `tenant_id` claim (portal tokens; omit for platform roles)
#
#   ADMIN=$(scripts/devtoken.sh alice platform-admin)
#   SMB=$(scripts/devtoken.sh bob tenant-admin tenant-smb)
#   curl -H "Authorization: Bearer $ADMIN" http://127.0.0.1:8080/v1/admin/numbering/operators
#
# The secret is GHASI_AUTH_JWT_HS256_SECRET when set, else the development secret of
# config/ghasi.yaml. TTL_S (default 3600) sets `exp`. Needs the openssl CLI.
set -euo pipefail
if [[ $# -lt 2 || $# -gt 3 ]]; then
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
fi
sub=$1 roles=$2 tenant=${3:-}
secret=${GHASI_AUTH_JWT_HS256_SECRET:-INSECURE-dev-only-hs256-secret-change-me-0001}
ttl=${TTL_S:-3600}
valid='^[A-Za-z0-9._:@-]+$'
for v in "$sub" ${tenant:+"$tenant"}; do
  [[ $v =~ $valid ]] || { echo "devtoken: '$v': use [A-Za-z0-9._:@-]" >&2; exit 2; }
done
role_json=
IFS=, read -ra rs <<<"$roles"
for r in "${rs[@]}"; do
  [[ $r =~ ^[a-z-]+$ ]] || { echo "devtoken: bad role '$r'" >&2; exit 2; }
  role_json+="${role_json:+,}\"$r\""
done
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
now=$(date +%s)
header=$(printf '{"alg":"HS256","typ":"JWT"}' | b64url)
payload=$(printf '{"sub":"%s","roles":[%s]%s,"iat":%d,"exp":%d}' "$sub" "$role_json" \
  "${tenant:+,\"tenant_id\":\"$tenant\"}" "$now" $((now + ttl)) | b64url)
sig=$(printf '%s.%s' "$header" "$payload" |
  openssl dgst -sha256 -mac HMAC -macopt "key:$secret" -binary | b64url)
printf '%s.%s.%s\n' "$header" "$payload" "$sig"
