// Package adapters defines what every field-bus adapter provides and uses:
// the Adapter and Publisher contracts and the JSON payloads of the wire
// contract (readings, events, device status).
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
// gateway/privacy.
package adapters
