// Package serialline is the adapter for building hardware that speaks text
// or simple binary frames over RS-232/RS-485 rather than Modbus: door access
// controllers, alarm panels. It opens the port with go.bug.st/serial.
//
// # Model
//
// Bytes are split into frames (Framer: delimiter, STX/ETX, fixed length or
// length prefix, with a maximum frame length and resynchronisation after
// garbage). Each frame is matched against each device's events (regular
// expressions with named groups); the groups become fields, each field's
// privacy rule is applied (keep, pseudonymize, drop; by the Minimiser in
// Config.Key, which the gateway fills with gateway/privacy's site key), and
// the result is published as an event (lintel/<gw>/<device>/<event>, {"ts":…,"fields":{…}})
// or as a state reading (e.g. door_2 = true). A state point name filled from
// a frame that is not a valid topic level (adapters.ValidTopicLevel: / + # $,
// controls, empty) drops the reading, counts it in BadTopics and is logged
// once per event. Periodic requests (STATUS?)
// wait for a matching answer; devices that stop answering are reported
// offline. Commands are templates whose parameters are validated before
// anything is written: printable ASCII only unless a parameter allows
// printable Unicode; numbers in plain decimal, sent in one canonical form
// (whole numbers when the bounds are), never NaN or Inf; enum; a pattern
// that must match the whole value.
//
// # Privacy
//
// Privacy rules are applied here, before Publish: a raw value of a field
// marked pseudonymize or drop is never on the local broker, in the buffer
// file or in the cloud. Frame contents are never logged.
//
// # Faults
//
// When the port fails (a USB adapter unplugged) every device's retained
// $status says offline and the port is reopened with backoff (0.5 s to 30 s)
// until it returns. Report gives each device's state (adapters.DeviceState):
// the kind of the last problem as a fixed phrase ("no answer to request",
// "cannot open port", "port lost"; on a line with one device also "frame
// matched no event" and "garbage or over-long frame dropped"), never the
// frame, and while the port cannot be opened, the next attempt. A device
// that stops answering is asked at its request period, not backed off.
package serialline
