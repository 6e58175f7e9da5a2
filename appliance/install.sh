#!/bin/sh
# Install Berth: binary, systemd unit, default config, system user.
#   appliance/install.sh [path/to/berth]      (default: target/release/berth)
# DESTDIR=/some/root installs into a scratch root (packaging); then no user
# is created and systemd is not touched.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-$here/../target/release/berth}
root=${DESTDIR:-}
[ -x "$bin" ] || { echo "install.sh: no binary at $bin (cargo build --release first)" >&2; exit 1; }

install -d "$root/usr/local/bin" "$root/etc/berth" "$root/etc/systemd/system" "$root/var/lib/berth"
install -m 0755 "$bin" "$root/usr/local/bin/berth"
install -m 0644 "$here/berth.service" "$root/etc/systemd/system/berth.service"
# keep an operator's edited config
if [ ! -e "$root/etc/berth/berth.toml" ]; then
  install -m 0640 "$here/berth.toml" "$root/etc/berth/berth.toml"
fi
"$root/usr/local/bin/berth" config check "$root/etc/berth/berth.toml" >/dev/null

if [ -z "$root" ]; then
  getent group berth >/dev/null || groupadd --system berth
  getent passwd berth >/dev/null || useradd --system --gid berth --home-dir /var/lib/berth --shell /usr/sbin/nologin berth
  chown berth:berth /var/lib/berth
  chgrp berth /etc/berth/berth.toml
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    echo "installed; start with: systemctl enable --now berth"
  fi
else
  echo "installed into $root"
fi
