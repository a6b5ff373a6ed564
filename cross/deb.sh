#!/bin/sh
# make deb: Debian packages of the agent (armhf, arm64, amd64) and of the
# issuer (arm64, amd64), built with dpkg-deb from the binaries of
# cross/build.sh. armhf carries the ARMv6 build: Raspberry Pi OS's armhf
# runs on every Pi, the Zero and Pi 1 included.
#
#   cross/deb.sh VERSION [DEBARCH...]    DEBARCH: armhf arm64 amd64
#   OUT=dir  where the .deb files go (default dist/deb)
set -eu
cd "$(dirname "$0")/.."
version=${1:?usage: cross/deb.sh VERSION [DEBARCH...]}
shift
[ $# -gt 0 ] || set -- armhf arm64 amd64
dist=${DIST:-dist}
out=${OUT:-$dist/deb}
command -v dpkg-deb >/dev/null 2>&1 || {
	echo "deb: dpkg-deb not found: install dpkg (make test-deps)" >&2
	exit 1
}

# Debian versions start with a digit and have no '-' without a revision:
# v1.2.0 → 1.2.0, v1.2.0-3-gabc → 1.2.0+3+gabc, a8c50c6-dirty → 0.0~a8c50c6+dirty
debver=$(printf '%s' "$version" | sed -e 's/^v\([0-9]\)/\1/' -e 's/[^A-Za-z0-9.+~]/+/g')
case "$debver" in [0-9]*) ;; *) debver="0.0~$debver" ;; esac

goarch_dir() { # Debian arch → dist/ dir of cross/build.sh
	case "$1" in armhf) echo armv6 ;; arm64) echo arm64 ;; amd64) echo amd64 ;;
	*) echo "deb: unknown Debian arch $1 (armhf arm64 amd64)" >&2; return 1 ;; esac
}

# build PKG DEBARCH DESCRIPTION CONFIGURED CONFIGURED_DOC
build() {
	pkg=$1 debarch=$2 desc=$3 configured=$4 configured_doc=$5
	bin="$dist/$(goarch_dir "$debarch")/$pkg"
	[ -x "$bin" ] || { echo "deb: $bin missing: run make cross" >&2; return 1; }
	stage=$(mktemp -d)
	chmod 0755 "$stage"
	trap 'rm -rf "$stage"' EXIT
	install -D -m 0755 "$bin" "$stage/usr/bin/$pkg"
	install -D -m 0644 "systemd/$pkg.service" "$stage/lib/systemd/system/$pkg.service"
	install -D -m 0644 "systemd/$pkg.sysusers" "$stage/usr/lib/sysusers.d/$pkg.conf"
	install -D -m 0644 "systemd/$pkg.tmpfiles" "$stage/usr/lib/tmpfiles.d/$pkg.conf"
	doc="$stage/usr/share/doc/$pkg"
	install -D -m 0644 docs/deploy.md "$doc/deploy.md"
	printf '%s\n' "$pkg: Agora token plumbing for device fleets." \
		"Built from the agoratokens module, version $version." >"$doc/README"
	conffiles=""
	if [ "$pkg" = agora-token-agent ]; then
		install -D -m 0640 cross/deb/agent.yaml "$stage/etc/$pkg/agent.yaml"
		install -D -m 0644 systemd/agora-token-agent.service.d/led.conf "$doc/examples/led.conf"
		conffiles="/etc/$pkg/agent.yaml"
	fi
	mkdir -p "$stage/DEBIAN"
	for s in postinst prerm postrm; do
		sed -e "s|@PKG@|$pkg|g" -e "s|@CONFIGURED@|$configured|g" \
			-e "s|@CONFIGURED_DOC@|$configured_doc|g" "cross/deb/$s.in" >"$stage/DEBIAN/$s"
		chmod 0755 "$stage/DEBIAN/$s"
	done
	[ -z "$conffiles" ] || printf '%s\n' $conffiles >"$stage/DEBIAN/conffiles"
	(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' | sort |
		xargs md5sum) >"$stage/DEBIAN/md5sums"
	size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
	cat >"$stage/DEBIAN/control" <<CONTROL
Package: $pkg
Version: $debver
Architecture: $debarch
Maintainer: agoratokens maintainers <maintainers@agoratokens.invalid>
Installed-Size: $size
Section: net
Priority: optional
Recommends: systemd
Description: $desc
CONTROL
	mkdir -p "$out"
	dpkg-deb --root-owner-group -Zxz --build "$stage" "$out/${pkg}_${debver}_${debarch}.deb" >/dev/null
	echo "$out/${pkg}_${debver}_${debarch}.deb"
	rm -rf "$stage"
	trap - EXIT
}

for debarch in "$@"; do
	build agora-token-agent "$debarch" \
		"keeps a device's Agora tokens fresh
 Requests Agora AccessToken2 tokens from agora-token-issuer over MQTT,
 renews them before they expire and hands them to the local media
 process over a Unix socket. Static binary, systemd unit, hardened." \
		"/etc/agora-token-agent/password /etc/agora-token-agent/bearer.token" \
		"it starts once /etc/agora-token-agent/password or bearer.token exists"
	case "$debarch" in arm64 | amd64)
		build agora-token-issuer "$debarch" \
			"signs and publishes Agora tokens for a device fleet
 Holds the App Certificate, maps device identities to the tokens they may
 hold and publishes signed AccessToken2 tokens over MQTT." \
			"/etc/agora-token-issuer/issuer.yaml" \
			"it starts once /etc/agora-token-issuer/issuer.yaml exists (agora-token-issuer init /etc/agora-token-issuer)"
		;;
	esac
done
