// Package adapters defines what every field-bus adapter provides and uses:
// the Adapter and Publisher contracts, the Reporter contract for metrics,
// the errors the command gate reports by kind, and the JSON payloads of the
// wire contract (readings, events, device status).
//
// One Adapter owns one bus (a serial port, a TCP connection to a Modbus
// gateway) for as long as its Run is running. Adapters know nothing about the
// cloud, the buffer or TLS: they publish Messages addressed by device and
// point, and the gateway turns them into topics. A level built from data (a
// template filled from a frame) must pass ValidTopicLevel, so a device can
// never add levels or wildcards to a topic; what fails is dropped and counted.
//
// The subpackages are the adapters: modbus (RTU and TCP), serialline (door
// controllers, alarm panels), bacnet (BACnet/IP). Fake hardware is not here:
// each protocol's fake device sits beside it (modbus/modbustest,
// bacnet/bacnettest) and the whole simulated building of `lintel demo` is
// gateway/demo/building. The privacy policy the serial line applies is
// gateway/privacy, reached through serialline's own Minimiser interface: no
// adapter imports anything of gateway/.
//
// # Which way the imports go
//
// gateway/config imports the adapters, never the reverse: config owns the
// YAML file (strict keys, line numbers in every message) and turns a bus of
// the file into the adapter's own section type (modbus.Config,
// serialline.Config, bacnet.Config); each adapter owns that type, the rules
// of its values (modbus.CheckDevice and CheckPoint, serialline.Framing's
// Validate; config reports what they refuse at the key's line) and the
// construction of a running adapter from it. An adapter therefore compiles
// and tests without the gateway, and the gateway's table is the only place
// that knows every bus type. (The serial line's event and command templates
// are still checked in gateway/config, beside the topic rules they share.)
//
// # Adding an adapter
//
// A new bus type touches:
//
//  1. adapters/<name>/ (its own package): a section type, New(section,
//     *slog.Logger) returning something that implements Adapter (and
//     command.Target's CheckWrite if it writes; Reporter for metrics, with
//     names from the catalogue in gateway/health.go), and the checks of its
//     values.
//  2. gateway/config: the YAML keys of its buses, devices and points, the
//     type in BusTypes, and a method returning its section, as
//     (*Config).Modbus does.
//  3. gateway/build.go: one line in busTypes,
//     "<type>": fromSection((*config.Config).<Name>, <name>.New).
//
// Nothing else changes: the gateway starts, stops, reloads, meters and
// writes every adapter through these contracts. TestAddingABusType
// (gateway/build_test.go) adds a test-only bus type this way, and
// TestEveryConfigBusTypeHasABuilder fails if config accepts a type the table
// cannot build. A new cloud payload format is the same kind of seam:
// implement uplink.Encoder and set uplink.Config.Encoder where gateway/build.go
// builds the uplink (see TestEncoderSeam in gateway/uplink).
package adapters
