#!/bin/sh
# The configuration is readable by the service, not by other users; the
# state directory is created by systemd (StateDirectory=lintel, 0700).
set -e
chgrp lintel /etc/lintel /etc/lintel/lintel.yaml
chmod 0750 /etc/lintel
chmod 0640 /etc/lintel/lintel.yaml
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload || true
fi
cat <<'MSG'
Lintel is installed but not started. Edit /etc/lintel/lintel.yaml, add users
with `lintel passwd add --file /etc/lintel/users NAME`, check it with
`lintel audit --config /etc/lintel/lintel.yaml --user lintel`, then:
  systemctl enable --now lintel
MSG
