#!/usr/bin/env bash
# Installs kassa-agent as a systemd service on a Linux till.
#   sudo scripts/install-linux.sh path/to/kassa-agent
# Keeps an existing configuration; writes the commented example otherwise and
# stops so the technician can fill it in. Safe to run again: `kassa-agent install`
# changes only what differs from its plan (see `kassa-agent install --dry-run`).
set -euo pipefail

bin=${1:-bin/kassa-agent}
conf_dir=/etc/kassa-agent
conf=$conf_dir/config.toml

if [ "$(id -u)" -ne 0 ]; then
	echo "run it as root (sudo $0 $bin)" >&2
	exit 1
fi
if [ ! -x "$bin" ]; then
	echo "no executable at $bin; build it with 'make build' or pass its path" >&2
	exit 1
fi

# Root-owned and not writable by others: the service runs whatever is there.
install -m 0755 -o root -g root "$bin" /usr/local/bin/kassa-agent
install -d -m 0755 -o root -g root "$conf_dir"
if [ ! -e "$conf" ]; then
	/usr/local/bin/kassa-agent config example > "$conf"
	chmod 0640 "$conf"
	echo "wrote $conf: set the devices and providers, then run this script again"
	exit 0
fi

/usr/local/bin/kassa-agent config check --config "$conf"
# Stopped first, so nothing writes the data directory while install hands it to
# the kassa-agent user (an upgrade from the root-run unit).
systemctl stop kassa-agent 2>/dev/null || true
# Creates the kassa-agent user (group dialout), gives it the data directory and
# read access to the config, writes the unit and enables it.
/usr/local/bin/kassa-agent install --config "$conf"
systemctl start kassa-agent
sleep 2
/usr/local/bin/kassa-agent status
echo "give the POS the API token in <store.dir>/api-token (default /var/lib/kassa-agent/api-token; readable by root)"
