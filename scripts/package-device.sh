#!/usr/bin/env bash
# Packs the Raspberry Pi release: papilla-device-<version>-aarch64.tar.gz and a .deb
# (papilla-device_<version>_arm64.deb), from the aarch64 build of scripts/cross-build.sh.
#
#   scripts/package-device.sh [OUT_DIR]      # default: dist/ (git-ignored)
#
# The tarball holds bin/papilla-device, scripts/{install-device.sh,device.toml,
# papilla-device.service}, models/ (the default bundle, the release public keys, the card) and
# README.md; on the Pi: `sudo ./install-device.sh papilla-device-<version>-aarch64.tar.gz`, or
# unpacked, `sudo papilla-device-<version>-aarch64/scripts/install-device.sh`.
# The .deb installs the same files under /usr/bin, /etc/papilla (a conffile), /usr/share/papilla
# and the systemd unit; its postinst creates the user and folders and installs the model only
# where none is installed yet. Builds the binary first when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-dist}"
BIN="$(scripts/cross-build.sh bin)"
[ -x "$BIN" ] || scripts/cross-build.sh build
VERSION="$(cargo pkgid -p papilla-device | sed 's/.*@//')"
NAME="papilla-device-$VERSION-aarch64"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
STAGE="$(mktemp -d)"
trap 'rm -rf "$STAGE"' EXIT

# Refuse a binary for the wrong machine: it would install and then fail to start on the Pi.
magic="$(od -An -tx1 -N4 "$BIN" | tr -d ' \n')"; machine="$(od -An -tx1 -j18 -N2 "$BIN" | tr -d ' \n')"
[ "$magic" = 7f454c46 ] && [ "$machine" = b700 ] ||
  { echo "package-device.sh: $BIN is not an aarch64 ELF executable" >&2; exit 2; }

# Symbols stripped (47 MB -> a few MB); the build keeps them for profiling and counting.
aarch64-linux-gnu-strip -o "$STAGE/papilla-device" "$BIN"
BIN="$STAGE/papilla-device"
# The newest glibc symbol version it links against: the .deb depends on it (2.35: Raspberry Pi
# OS bookworm has 2.36; bullseye's 2.31 is too old).
GLIBC="$(aarch64-linux-gnu-objdump -T "$BIN" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1 | sed 's/GLIBC_//')"

# The tarball.
T="$STAGE/$NAME"
install -D -m 0755 "$BIN" "$T/bin/papilla-device"
install -D -m 0755 scripts/install-device.sh "$T/scripts/install-device.sh"
install -m 0644 scripts/device.toml scripts/papilla-device.service "$T/scripts/"
install -D -m 0644 models/papilla-default.papilla "$T/models/papilla-default.papilla"
install -m 0644 models/*.pub models/MODEL_CARD.md "$T/models/"
{
  echo "# papilla-device $VERSION for a 64-bit Raspberry Pi OS (aarch64)"
  echo
  echo "Install (as root, on the Pi): \`sudo scripts/install-device.sh\` from this folder."
  echo "It installs bin/papilla-device as /usr/local/bin/papilla-device, scripts/device.toml as"
  echo "/etc/papilla/device.toml (an existing one is kept), the model in models/ through the"
  echo "device's own checks (signature, self-test) and the systemd unit."
  echo
  sed -n '/^## On a Pi/,/^## /p' README.md | sed '$d'
} > "$T/README.md"
tar -C "$STAGE" --owner=0 --group=0 --sort=name -czf "$OUT/$NAME.tar.gz" "$NAME"

# The .deb: dpkg-deb from Debian's dpkg, no cargo-deb needed.
D="$STAGE/deb"
install -D -m 0755 "$BIN" "$D/usr/bin/papilla-device"
install -D -m 0644 scripts/device.toml "$D/etc/papilla/device.toml"
install -D -m 0644 models/papilla-default.papilla "$D/usr/share/papilla/models/papilla-default.papilla"
install -m 0644 models/*.pub models/MODEL_CARD.md "$D/usr/share/papilla/models/"
install -D -m 0644 /dev/null "$D/lib/systemd/system/papilla-device.service"
sed 's#/usr/local/bin/papilla-device#/usr/bin/papilla-device#g; s#scripts/install-device.sh#the papilla-device package#' \
  scripts/papilla-device.service > "$D/lib/systemd/system/papilla-device.service"
mkdir -p "$D/DEBIAN"
cat > "$D/DEBIAN/control" <<EOF
Package: papilla-device
Version: $VERSION
Architecture: arm64
Maintainer: The Papilla developers
Depends: libc6 (>= $GLIBC)
Recommends: rpicam-apps | v4l-utils
Section: science
Priority: optional
Description: optic disc and cup segmentation for a glaucoma-screening camera
 The camera service of Papilla: waits for the trigger, captures a fundus photograph, segments
 optic disc and cup with a signed model, stores the exam power-safely and lights the LEDs.
EOF
echo /etc/papilla/device.toml > "$D/DEBIAN/conffiles"
cat > "$D/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
[ "$1" = configure ] || exit 0
id papilla >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin papilla
for g in gpio video; do getent group "$g" >/dev/null && usermod -aG "$g" papilla; done
install -d -o papilla -g papilla -m 0750 /var/lib/papilla /srv/camera
# The first model only: an update goes through `papilla-device install-model` (A/B slots).
if ! su -s /bin/sh papilla -c '/usr/bin/papilla-device status --config /etc/papilla/device.toml' >/dev/null 2>&1; then
  su -s /bin/sh papilla -c '/usr/bin/papilla-device install-model /usr/share/papilla/models/papilla-default.papilla --config /etc/papilla/device.toml' || true
fi
systemctl daemon-reload >/dev/null 2>&1 || true
systemctl enable papilla-device >/dev/null 2>&1 || true
EOF
cat > "$D/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
systemctl stop papilla-device >/dev/null 2>&1 || true
EOF
chmod 0755 "$D/DEBIAN/postinst" "$D/DEBIAN/prerm"
dpkg-deb --root-owner-group --build "$D" "$OUT/papilla-device_${VERSION}_arm64.deb" >/dev/null

ls -l "$OUT/$NAME.tar.gz" "$OUT/papilla-device_${VERSION}_arm64.deb"
