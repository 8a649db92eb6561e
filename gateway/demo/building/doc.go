// Package building is a simulated building: a Modbus TCP server on a
// loopback port whose registers move like a small plant. `lintel demo` polls
// it, and tests use it as a real device.
//
// Register map (all addresses zero-based):
//
//	unit 1 "ahu-1"        holding 100 float32 supply_temp (°C)
//	                      holding 102 float32 return_temp (°C)
//	                      holding 110 uint16  fan_speed (%), 0 while the fan is off
//	                      coil    10          fan_enable (writable)
//	                      input   200 int16   outdoor_temp (0.1 °C)
//	unit 2 "energy-meter" input 0 float32 power (kW), input 2 uint32 energy (kWh),
//	                      input 4 uint16 voltage (0.1 V)
//	unit 3 "doors-io"     discrete 0 door_1_open, discrete 1 door_2_open,
//	                      discrete 8 alarm, coil 0 door_1_release (writable)
//
// Any other unit id answers with exception 0x0B (gateway target failed to
// respond), as a Modbus TCP gateway does for an absent RTU device.
package building
