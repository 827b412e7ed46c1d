// Command herald is Herald's one binary: serve, migrate, app create, config dump, version, bench.
package main

import (
	"os"

	"herald.dev/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
