#!/usr/bin/env bash
# Installs papilla-device on a Raspberry Pi (run there as root): the binary, the config, the
# shipped model into slot A, and the systemd unit.
#
#   sudo scripts/install-device.sh papilla-device-VERSION-aarch64.tar.gz   # the release tarball
#   sudo scripts/install-device.sh                       # from an unpacked tarball (bin/, models/)
#   sudo scripts/install-device.sh BINARY [MODEL.papilla]
#
# The tarball comes from scripts/package-device.sh; BINARY from scripts/cross-build.sh. MODEL
# defaults to models/papilla-default.papilla (signed by models/papilla-release.pub). A config
# already in /etc/papilla is kept.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
if [[ "${1:-}" == *.tar.gz ]]; then
  [ "$(id -u)" = 0 ] || { echo "install-device.sh: run as root" >&2; exit 2; }
  UNPACK="$(mktemp -d)"
  trap 'rm -rf "$UNPACK"' EXIT
  tar -C "$UNPACK" -xzf "$1"
  INNER=("$UNPACK"/papilla-device-*-aarch64/scripts/install-device.sh)
  [ -x "${INNER[0]}" ] || { echo "install-device.sh: $1 is not a papilla-device release tarball" >&2; exit 2; }
  "${INNER[0]}"
  exit 0
fi
BIN="${1:-$HERE/../bin/papilla-device}"
[ -x "$BIN" ] || { echo "usage: install-device.sh [RELEASE.tar.gz | BINARY [MODEL.papilla]] ($BIN not found)" >&2; exit 2; }
MODEL="${2:-$HERE/../models/papilla-default.papilla}"
[ "$(id -u)" = 0 ] || { echo "install-device.sh: run as root" >&2; exit 2; }

id papilla >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin papilla
for g in gpio video; do getent group "$g" >/dev/null && usermod -aG "$g" papilla; done
install -m 0755 "$BIN" /usr/local/bin/papilla-device
install -d -m 0755 /etc/papilla
if [ ! -e /etc/papilla/device.toml ]; then
  install -m 0644 "$HERE/device.toml" /etc/papilla/device.toml
  echo "installed /etc/papilla/device.toml: add your signing key under [trust] keys"
fi
install -d -o papilla -g papilla -m 0750 /var/lib/papilla /srv/camera
# The first model goes through the same checks as every update: signature against the trusted
# keys of /etc/papilla/device.toml (the shipped model is signed by the release key), self-test.
sudo -u papilla /usr/local/bin/papilla-device install-model "$MODEL" --config /etc/papilla/device.toml
install -m 0644 "$HERE/papilla-device.service" /etc/systemd/system/papilla-device.service
systemctl daemon-reload
systemctl enable --now papilla-device
systemctl --no-pager status papilla-device || true
