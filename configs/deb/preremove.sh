#!/bin/sh
# Stop the service before its files go; the buffer and keys in
# /var/lib/lintel stay (remove them by hand if the data is not needed).
set -e
if [ -d /run/systemd/system ]; then
  systemctl stop lintel 2>/dev/null || true
  systemctl disable lintel 2>/dev/null || true
fi
