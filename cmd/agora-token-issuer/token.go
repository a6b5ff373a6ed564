package main

import (
	"context"
	"fmt"
	"io"
)

func runToken(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "agora-token-issuer token: not implemented yet")
	return 1
}
