#!/usr/bin/env bash
# The Debian package, tested the way an admin uses it: build the .deb from a Release build,
# lintian it, `apt-get install ./scimsync_*.deb`, check the user, the files, the conffile,
# `scimsyncd --version` and `check-config`, run the installed binary as the scimsync user
# against a private Redis with its secrets in a credential directory (as systemd's
# LoadCredential= provides them), send it a signed webhook and see the worker apply it (dry run),
# upgrade to a rebuilt package keeping an edited conffile, and purge.
#
# Needs root (it installs and purges a system package and creates the scimsync user); without
# root it prints why it is skipped and exits 0. Run by ./scripts/test; alone:
#   sudo tests/packaging/deb_install_test.sh        DEB_BUILD_DIR (default build/deb)
# It refuses to run on a host where scimsync is already installed: it would purge it.
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ "$(id -u)" -ne 0 ]; then
  echo "deb_install_test: SKIPPED (needs root to install, upgrade and purge the package;" \
    "CI runs ./scripts/test as root)" >&2
  exit 0
fi
if dpkg-query -W -f='${Status}' scimsync 2>/dev/null | grep -q 'ok installed\|config-files'; then
  echo "deb_install_test: FAILED: scimsync is already installed here; this test would" \
    "purge it. Run it in a container or remove the package first." >&2
  exit 1
fi

started=$(date +%s)
build="${DEB_BUILD_DIR:-build/deb}"
work="$(mktemp -d /tmp/scimsync-deb-test.XXXXXX)"
chmod 755 "$work"
redis_pid="" daemon_pid=""
fail() {
  echo "deb_install_test: FAILED: $*" >&2
  [ -f "$work/daemon.log" ] && tail -n 30 "$work/daemon.log" >&2
  exit 1
}
cleanup() {
  if [ -n "$daemon_pid" ]; then kill "$daemon_pid" 2>/dev/null || true; fi
  if [ -n "$redis_pid" ]; then kill "$redis_pid" 2>/dev/null || true; fi
  wait 2>/dev/null || true
  if dpkg-query -W -f='${Status}' scimsync 2>/dev/null | grep -q 'ok installed\|config-files'; then
    apt-get purge -y -qq scimsync >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
export DEBIAN_FRONTEND=noninteractive
apt_get() { apt-get -o DPkg::Lock::Timeout=120 "$@"; }

# --- Build: Release (a sanitizer build would depend on libasan), ccache when there is one. ---
launcher=()
if command -v ccache >/dev/null 2>&1; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
package() {  # $1: Debian revision ("" for none)
  {
    cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
      -DSCIMSYNC_DEB_RELEASE="$1" "${launcher[@]}" &&
      cmake --build "$build" -j "$(nproc)" &&
      rm -f "$build"/scimsync_*.deb &&
      (cd "$build" && cpack -G DEB)
  } >"$work/build.log" 2>&1 || { tail -n 40 "$work/build.log" >&2; fail "building the package"; }
  local deb
  deb="$(ls "$build"/scimsync_*.deb)"
  cp "$deb" "$work/"
  chmod 644 "$work/$(basename "$deb")"
  echo "$work/$(basename "$deb")"
}
deb="$(package "")"
built=$(date +%s)
echo "deb_install_test: built $(basename "$deb") in $((built - started)) s" >&2

# --- lintian: clean apart from the overrides the package ships (each explained there). ---
if command -v lintian >/dev/null 2>&1; then
  lintian --fail-on error,warning --tag-display-limit 0 "$deb" >"$work/lintian.txt" 2>&1 ||
    { cat "$work/lintian.txt" >&2; fail "lintian"; }
else
  fail "lintian is missing (./scripts/install-deps installs it)"
fi

# --- Install. ---
apt_get install -y -qq "$deb" >"$work/apt.log" 2>&1 || { cat "$work/apt.log" >&2; fail "apt-get install"; }
version="$(dpkg-query -W -f='${Version}' scimsync)"

getent passwd scimsync >/dev/null || fail "no scimsync user"
[ "$(getent passwd scimsync | cut -d: -f7)" = /usr/sbin/nologin ] || fail "scimsync has a login shell"
[ "$(id -u scimsync)" -lt 1000 ] || fail "scimsync is not a system user"
for f in /usr/bin/scimsyncd /usr/lib/systemd/system/scimsync.service \
  /usr/lib/sysusers.d/scimsync.conf /usr/lib/tmpfiles.d/scimsync.conf \
  /etc/scimsync/scimsync.yaml /usr/share/scimsync/profiles/generic.yaml \
  /usr/share/scimsync/prometheus/scimsync-alerts.yml \
  /usr/share/scimsync/grafana/scimsync-dashboard.json \
  /usr/share/man/man8/scimsyncd.8.gz /usr/share/man/man5/scimsync.yaml.5.gz \
  /usr/share/bash-completion/completions/scimsyncd /usr/share/doc/scimsync/operations.md \
  /usr/share/doc/scimsync/copyright /usr/share/doc/scimsync/changelog.gz; do
  [ -f "$f" ] || fail "$f is not installed"
done
dpkg-query -W -f='${Conffiles}\n' scimsync | grep -q '^ /etc/scimsync/scimsync.yaml ' ||
  fail "/etc/scimsync/scimsync.yaml is not a conffile"
cmp -s /etc/scimsync/scimsync.yaml config/examples/scimsync.yaml || fail "conffile is not the example"
if command -v man >/dev/null 2>&1; then
  man -w scimsyncd >/dev/null || fail "man scimsyncd"
  man -w 5 scimsync.yaml >/dev/null || fail "man 5 scimsync.yaml"
fi
if command -v systemd-tmpfiles >/dev/null 2>&1; then
  [ "$(stat -c %a /etc/credstore)" = 700 ] || fail "/etc/credstore is not 0700"
fi

want_version="scimsyncd $(sed -n 's/^project(scimsync VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)"
[ "$(/usr/bin/scimsyncd --version)" = "$want_version" ] || fail "--version: $(/usr/bin/scimsyncd --version)"

# The shipped config names secrets that are not there yet: check-config says which, exits 78.
set +e
/usr/bin/scimsyncd check-config --config /etc/scimsync/scimsync.yaml >"$work/check.txt" 2>&1
rc=$?
set -e
[ "$rc" -eq 78 ] || fail "check-config exited $rc, not 78: $(cat "$work/check.txt")"
grep -q JUMPCLOUD_API_KEY "$work/check.txt" || fail "check-config does not name JUMPCLOUD_API_KEY"
grep -q HR_WEBHOOK_SECRET "$work/check.txt" || fail "check-config does not name HR_WEBHOOK_SECRET"

# --- Run the installed binary as systemd would: the scimsync user, secrets as credentials. ---
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null ||
  echo $((20000 + RANDOM % 20000)); }
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" \
  >"$work/redis.log" 2>&1 &
redis_pid=$!
for _ in $(seq 100); do redis-cli -p "$redis_port" ping 2>/dev/null | grep -q PONG && break; sleep 0.05; done

mkdir -m 700 "$work/creds" "$work/state"
secret="deb-test-webhook-secret"
printf 'deb-test-api-key' >"$work/creds/jumpcloud-api-key"
printf '%s' "$secret" >"$work/creds/hr-webhook-secret"
chmod 400 "$work/creds/"*
chown -R scimsync:scimsync "$work/creds" "$work/state"
port=$(free_port)
sed -e "s|^  port: 8080|  port: $port|" \
  -e "s|redis://127.0.0.1:6379/0|redis://127.0.0.1:$redis_port/0|" \
  -e "s|api_key_env: JUMPCLOUD_API_KEY .*|api_key_file: jumpcloud-api-key|" \
  -e "s|secret_env: HR_WEBHOOK_SECRET .*|secret_file: hr-webhook-secret|" \
  -e "s|dry_run: false|dry_run: true|" \
  -e "s|dry_run_file: .*|dry_run_file: $work/state/dry-run.jsonl|" \
  /etc/scimsync/scimsync.yaml >"$work/scimsync.yaml"
chmod 644 "$work/scimsync.yaml"
CREDENTIALS_DIRECTORY="$work/creds" setpriv --reuid=scimsync --regid=scimsync --init-groups /usr/bin/scimsyncd check-config \
  --config "$work/scimsync.yaml" >"$work/check2.txt" 2>&1 || fail "check-config: $(cat "$work/check2.txt")"
CREDENTIALS_DIRECTORY="$work/creds" setpriv --reuid=scimsync --regid=scimsync --init-groups /usr/bin/scimsyncd \
  --config "$work/scimsync.yaml" >"$work/daemon.log" 2>&1 &
daemon_pid=$!
ready=""
for _ in $(seq 200); do
  if curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then ready=1; break; fi
  sleep 0.05
done
[ -n "$ready" ] || fail "the installed daemon did not become ready"

body='{"id":"evt-1","type":"employee.created","employee":{"id":"E1","firstName":"Ada","lastName":"Lovelace","workEmail":"ada@example.com"}}'
sig=$(printf '%s' "$body" | openssl dgst -sha256 -hmac "$secret" -r | cut -d' ' -f1)
status=$(curl -sS -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$port/webhooks/hr" \
  -H 'Content-Type: application/json' -H "X-Scimsync-Signature: sha256=$sig" --data "$body")
[ "$status" = 202 ] || fail "signed webhook answered $status"
status=$(curl -sS -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$port/webhooks/hr" \
  -H 'Content-Type: application/json' -H "X-Scimsync-Signature: sha256=00$sig" --data "$body")
[ "$status" = 401 ] || fail "a bad signature answered $status"
applied=""
for _ in $(seq 200); do
  if grep -q ada "$work/state/dry-run.jsonl" 2>/dev/null; then applied=1; break; fi
  sleep 0.05
done
[ -n "$applied" ] || fail "the worker did not apply the webhook (dry run file)"
kill -TERM "$daemon_pid"
set +e
wait "$daemon_pid"
rc=$?
set -e
daemon_pid=""
[ "$rc" -eq 0 ] || fail "scimsyncd exited $rc on SIGTERM"

# --- Upgrade to a rebuilt package; the admin's edit of the conffile stays. ---
# The rebuilt package's example config changes too (as a release's would), so dpkg meets the
# case it asks about: both sides changed. --force-confold is the answer operations.md gives;
# the new example lands next to the kept file as .dpkg-dist.
printf '# edited by the admin before the upgrade\n' >>/etc/scimsync/scimsync.yaml
edited="$(sha256sum /etc/scimsync/scimsync.yaml)"
deb2="$(package 2)"
dpkg-deb -R "$deb2" "$work/deb2"
printf '# changed in the new release\n' >>"$work/deb2/etc/scimsync/scimsync.yaml"
(cd "$work/deb2" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' |
  xargs -0 md5sum >DEBIAN/md5sums)
dpkg-deb -b --root-owner-group "$work/deb2" "$deb2" >/dev/null
apt_get install -y -qq -o Dpkg::Options::=--force-confold "$deb2" >"$work/apt2.log" 2>&1 ||
  { cat "$work/apt2.log" >&2; fail "upgrade"; }
[ "$(dpkg-query -W -f='${Version}' scimsync)" != "$version" ] || fail "version did not change on upgrade"
[ "$(sha256sum /etc/scimsync/scimsync.yaml)" = "$edited" ] || fail "the upgrade replaced the edited conffile"
grep -q 'changed in the new release' /etc/scimsync/scimsync.yaml.dpkg-dist ||
  fail "the new release's config is not beside the kept one (.dpkg-dist)"
/usr/bin/scimsyncd --version >/dev/null || fail "upgraded binary does not run"
getent passwd scimsync >/dev/null || fail "user gone after upgrade"

# --- Purge: files, conffile and state go; the system user stays (Debian's rule). ---
apt_get purge -y -qq scimsync >"$work/apt3.log" 2>&1 || { cat "$work/apt3.log" >&2; fail "purge"; }
for f in /usr/bin/scimsyncd /etc/scimsync /usr/share/scimsync /var/lib/scimsync \
  /usr/share/man/man8/scimsyncd.8.gz; do
  [ ! -e "$f" ] || fail "$f is left after purge"
done
dpkg-query -W -f='${Status}' scimsync 2>/dev/null | grep -q 'ok installed\|config-files' &&
  fail "dpkg still knows the package after purge"

echo "deb_install_test: ok (build $((built - started)) s, total $(($(date +%s) - started)) s)" >&2
