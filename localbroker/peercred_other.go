//go:build !linux

package localbroker

import "net"

// peerUID is not implemented here: unix-socket clients share one back-off
// bucket.
func peerUID(*net.UnixConn) (uint32, bool) { return 0, false }
