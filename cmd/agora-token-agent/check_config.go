package main

import (
	"context"
	"fmt"
	"io"
)

func runCheckConfig(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "agora-token-agent: not implemented yet")
	return 1
}
