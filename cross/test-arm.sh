#!/bin/sh
# make test-arm: the codec, wire, agent (with the socket server) and
# device tests, cross-compiled for the Pi Zero's ARMv6 (32-bit) and for
# arm64, run under qemu-user through `go test -exec cross/qemu-exec.sh`.
# 32-bit int overflows, alignment of 64-bit atomics and ARM-only code
# paths fail here instead of on a board.
#
# Programs the tests start (mosquitto, gcc, node) are host binaries; the
# emulated test binary execs them through the kernel, which runs them
# natively, so the same tests run as on the host.
#
# Left out (TEST_ARM_SKIP): TestPeerCredentials and (agent/client)
# TestWatchEndsWhenForbidden re-execute a copy of their
# own test binary as another uid; without binfmt_misc (containers, CI)
# the kernel cannot exec an ARM binary directly. SO_PEERCRED is the
# host kernel's either way, so the amd64 run covers it.
#
#   TEST_ARM_ARCHS="armv6 arm64"   which arches (default both)
#   TEST_ARM_RUN=regexp            passed to go test -run
#   TEST_ARM_SKIP=regexp           passed to go test -skip
set -eu
cd "$(dirname "$0")/.."
go=${GO:-go}
pkgs="./accesstoken/... ./wire/... ./agent/... ./device/... ./secretfile/..."
for tool in qemu-arm-static qemu-aarch64-static; do
	command -v "$tool" >/dev/null 2>&1 || {
		echo "test-arm: $tool not found: install qemu-user-static (make test-deps)" >&2
		exit 1
	}
done
run="-skip=${TEST_ARM_SKIP-^(TestPeerCredentials|TestWatchEndsWhenForbidden)\$}"
[ -z "${TEST_ARM_RUN:-}" ] || run="$run -run=$TEST_ARM_RUN"
status=0
for arch in ${TEST_ARM_ARCHS:-armv6 arm64}; do
	case "$arch" in
	armv6) goarch=arm goarm=6 ;;
	armv7) goarch=arm goarm=7 ;;
	arm64) goarch=arm64 goarm= ;;
	*) echo "test-arm: unknown arch $arch" >&2; exit 2 ;;
	esac
	echo "== test-arm: $arch under qemu-user"
	start=$(date +%s)
	# shellcheck disable=SC2086
	CGO_ENABLED=0 GOOS=linux GOARCH=$goarch GOARM=$goarm \
		"$go" test -count=1 -timeout 10m -exec "$PWD/cross/qemu-exec.sh" $run $pkgs || status=1
	echo "== test-arm: $arch took $(( $(date +%s) - start ))s"
done
exit $status
