package main

import (
	"context"
	"io"

	"github.com/lintel-gw/lintel/gateway/demo"
)

func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo", stderr)
	dataDir := fs.String("data-dir", "", "keep the buffer and generated files here (default: a temporary directory)")
	listen := fs.String("listen", "127.0.0.1:0", "local broker address (loopback)")
	verbose := fs.Bool("v", false, "log gateway activity at info level")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	level := "warn"
	if *verbose {
		level = "info"
	}
	return demo.Run(ctx, demo.Options{
		DataDir: *dataDir, Listen: *listen, Out: stdout,
		Logger: newLogger(stderr, level, "text"), Version: version(),
	})
}
