// Package modbustest simulates Modbus devices for tests: an RTU bus of slave
// units on a pseudo-terminal, with injectable delay, CRC corruption,
// exceptions and silence, and optional emulation of the wire time at a baud
// rate (simonvetter/modbus has no RTU server).
package modbustest
