// Package gateway wires Lintel together: it builds the buffer, the local
// broker, one adapter per bus and the uplink from a config, and runs them
// with a defined start and stop order.
//
//	serial/TCP ─▶ adapter ─▶ localbroker.Publish ─▶ buffer (group commit)
//	           ─▶ uplink ─▶ cloud (QoS1, mTLS) ─▶ PUBACK ─▶ buffer.Ack
//
// Life: New opens everything (and closes it again if any part fails), Run
// runs until its ctx ends or Shutdown is called, Shutdown(ctx) bounds the
// wait like net/http's. Reload is accepted only while running. Stop order:
// commands (none admitted once the stop begins, from the cloud or a local
// client; those in progress finish), adapters (finish the current
// transaction), local broker, uplink (bounded drain of in-flight PUBACKs),
// buffer. While running, the gateway's retained lintel/<gw>/$status on the
// local broker says online (offline just before the broker closes); it is
// not forwarded, the uplink keeps the cloud's. With home_assistant on,
// discovery configs are published after the broker starts and on every
// reload (homeassistant).
//
// Files: gateway.go (the Gateway, commands, publish), lifecycle.go (Run,
// Reload, Shutdown), build.go (every part from the config; busTypes is the
// one table of bus types), stats.go (snapshots), health.go (/metrics from
// the adapters' reports, /healthz), statuspage.go (what the status page
// reads and does).
//
// The subpackages are config (lintel.yaml), uplink (the cloud connection),
// command (the command gate), audit (`lintel audit`), privacy (the policy
// for personal fields), homeassistant (discovery), pki (certificates for the
// demo and tests), demo (`lintel demo`, with the simulated building in
// demo/building) and statuspage (the technician's web page, served while Run
// runs when status_page is configured).
package gateway
