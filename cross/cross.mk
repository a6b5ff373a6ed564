# Cross builds for the boards, tests under qemu-user and Debian packages.
#
#   make cross      static binaries for armv6 (Pi Zero/1), armv7, arm64
#                   and amd64 in dist/<arch>/, and a table of their sizes
#   make test-arm   the codec, wire, agent, socket and device tests built
#                   for armv6 and arm64, run under qemu-user (make test
#                   runs it before the race suite)
#   make deb        .deb packages in dist/deb/ (agent: armhf arm64 amd64;
#                   issuer: arm64 amd64)
#   make footprint  the agent's size, idle RSS, CPU time and context
#                   switches (also part of make bench)

.PHONY: cross test-arm deb footprint

cross:
	@GO=$(GO) cross/build.sh $(VERSION)

test-arm:
	@GO=$(GO) cross/test-arm.sh

deb: cross
	@cross/deb.sh $(VERSION)

footprint:
	@scripts/bench-footprint.sh
