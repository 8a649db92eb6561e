//go:build unix

package gateway

import "syscall"

// diskFree is the space left to unprivileged users on dir's file system,
// -1 when unknown.
func diskFree(dir string) int64 {
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dir, &fs); err != nil {
		return -1
	}
	return int64(fs.Bavail) * int64(fs.Bsize)
}
