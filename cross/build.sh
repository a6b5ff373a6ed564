#!/bin/sh
# make cross: static, stripped binaries for the boards and servers, in
# dist/<arch>/, and a table of their sizes.
#
#   cross/build.sh VERSION [ARCH...]     ARCH: armv6 armv7 arm64 amd64
#
# The agent is built for every arch; the issuer (a cloud service) for
# arm64 and amd64 only.
set -eu
cd "$(dirname "$0")/.."
version=${1:?usage: cross/build.sh VERSION [ARCH...]}
shift
[ $# -gt 0 ] || set -- armv6 armv7 arm64 amd64
dist=${DIST:-dist}
go=${GO:-go}

goenv() { # goenv ARCH: prints GOARCH and GOARM for an arch name
	case "$1" in
	armv6) echo "arm 6" ;;
	armv7) echo "arm 7" ;;
	arm64) echo "arm64 " ;;
	amd64) echo "amd64 " ;;
	*) echo "cross/build.sh: unknown arch $1 (armv6 armv7 arm64 amd64)" >&2; return 1 ;;
	esac
}

for arch in "$@"; do
	set -- $(goenv "$arch")
	goarch=$1 goarm=${2:-}
	cmds=agora-token-agent
	case "$arch" in arm64 | amd64) cmds="$cmds agora-token-issuer" ;; esac
	mkdir -p "$dist/$arch"
	# 32-bit ARM Linux has 4 KiB pages only: aligning the sections to
	# 4 KiB instead of the linker's 64 KiB default saves 0.1 MiB of
	# padding. (arm64 keeps 64 KiB: the Pi 5 kernel uses 16 KiB pages.)
	round=""
	[ "$goarch" = arm ] && round="-R 0x1000"
	for cmd in $cmds; do
		# The agent speaks HTTP/1.1 only (token servers, paho's
		# websocket dial): dropping net/http's bundled HTTP/2 saves
		# 0.4 MiB on armv6. It is also built without inlining, except
		# in the runtime, the standard library's internal packages,
		# crypto and math/bits (the scheduler, the GC and the TLS
		# handshake keep their speed: a handshake costs the same CPU):
		# 0.4 MiB less on armv6, for code that runs a few times an hour.
		tags="" gcflags=""
		if [ "$cmd" = agora-token-agent ]; then
			tags=nethttpomithttp2
			gcflags="-gcflags=all=-l -gcflags=runtime/...= -gcflags=internal/...= -gcflags=crypto/...= -gcflags=vendor/golang.org/x/crypto/...= -gcflags=math/bits="
		fi
		# shellcheck disable=SC2086 # $gcflags is a list of flags
		CGO_ENABLED=0 GOOS=linux GOARCH=$goarch GOARM=$goarm \
			"$go" build -trimpath -tags "$tags" $gcflags \
			-ldflags "-s -w $round -X agoratokens/buildinfo.Version=$version" \
			-o "$dist/$arch/$cmd" "./cmd/$cmd"
	done
done

# The size table, with the agent's armv6 budget checked.
budget=$((5 * 1024 * 1024))
printf '%-8s %-20s %10s %9s\n' arch binary bytes MiB
for f in "$dist"/*/agora-token-*; do
	[ -f "$f" ] || continue
	arch=$(basename "$(dirname "$f")")
	bytes=$(stat -c %s "$f")
	mib=$(awk "BEGIN { printf \"%.2f\", $bytes / 1048576 }")
	note=""
	if [ "$arch" = armv6 ] && [ "$(basename "$f")" = agora-token-agent ] && [ "$bytes" -gt "$budget" ]; then
		note="  over the 5.0 MiB budget"
	fi
	printf '%-8s %-20s %10d %9s%s\n' "$arch" "$(basename "$f")" "$bytes" "$mib" "$note"
done
