#!/bin/sh
# Installs (as root, from Debian's packages) what the test suite runs:
# a real mosquitto broker, qemu-user for the ARM builds, Node.js and npm
# for the cross-check against Agora's npm package, gcc for the C client,
# systemd-analyze for the unit files and dpkg-deb for the packages.
set -eu

missing=""
need() { # need COMMAND PACKAGE
	command -v "$1" >/dev/null 2>&1 || missing="$missing $2"
}
need mosquitto mosquitto
need mosquitto_passwd mosquitto
need qemu-arm-static qemu-user-static
need qemu-aarch64-static qemu-user-static
need node nodejs
need npm npm
need gcc gcc
need systemd-analyze systemd
need dpkg-deb dpkg
need setpriv util-linux
need chromium chromium
need nats-server nats-server
missing=$(echo $missing | tr ' ' '\n' | sort -u | tr '\n' ' ')

if [ -z "$(echo $missing)" ]; then
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "make test needs these Debian packages: $missing" >&2
	echo "install them with: sudo apt-get install -y $missing" >&2
	exit 1
fi
echo "installing test dependencies: $missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null || { echo "apt-get update failed" >&2; exit 1; }
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null || {
	echo "could not install: $missing" >&2
	exit 1
}
