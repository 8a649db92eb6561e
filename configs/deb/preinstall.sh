#!/bin/sh
# Create the service user: no login, no home outside the state directory,
# in dialout for the serial ports.
set -e
if ! getent passwd lintel >/dev/null; then
  useradd --system --home-dir /var/lib/lintel --no-create-home --shell /usr/sbin/nologin lintel
fi
usermod -a -G dialout lintel 2>/dev/null || true
