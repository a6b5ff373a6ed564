#!/bin/sh
# go test -exec wrapper: runs a cross-compiled test binary under
# qemu-user, picked from GOARCH (and GOARM) as exported for the build.
# armv6 runs as an ARM1176 (Pi Zero/1): an ARMv7-only instruction in the
# binary would fault here as it would on the board.
set -eu
case "${GOARCH:-}" in
arm)
	case "${GOARM:-7}" in
	6*) cpu=arm1176 ;;
	*) cpu=cortex-a7 ;;
	esac
	exec qemu-arm-static -cpu "$cpu" "$@"
	;;
arm64)
	exec qemu-aarch64-static "$@"
	;;
*)
	echo "qemu-exec.sh: GOARCH=${GOARCH:-unset} is not an emulated arch" >&2
	exit 2
	;;
esac
