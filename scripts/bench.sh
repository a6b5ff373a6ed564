#!/bin/sh
# Runs every benchmark once, with memory figures.
set -eu
go test -run '^$' -bench . -benchmem ./...
