// Package modbus is the Modbus adapter: it polls holding and input registers,
// coils and discrete inputs over Modbus TCP (and any transport
// simonvetter/modbus speaks) and publishes readings per the wire contract.
//
// # Model
//
// A Bus owns one connection and runs one transaction at a time; devices are
// unit ids on it. Each device's points are merged into the fewest read
// requests once, in NewBus. Devices are polled on their own period; a reading
// is published when it changed by more than the point's deadband or when its
// maximum interval passed. Time stamps are taken when the response arrives.
//
// # Faults
//
// A failed poll counts against its device only. After OfflineAfter failures
// in a row the device's retained $status says offline and it is polled with
// exponential backoff (at most 5 minutes), so a dead device costs the others
// little. Link errors drop the connection; it is reopened on the next request.
// Report gives each device's state (adapters.DeviceState): the kind of the
// last failed poll ("timeout", "CRC error", "exception 2 (illegal data
// address)", "connection failed"; never addresses or response bytes), its
// time, the failures in a row and, while backing off, the next try.
package modbus
