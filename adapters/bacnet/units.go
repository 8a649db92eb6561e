package bacnet

// unitSymbols maps BACnetEngineeringUnits (clause 21) to the symbols of the
// wire contract. Units missing here are published without a unit (and
// named in the commissioning listing by number) rather than guessed.
var unitSymbols = map[uint32]string{
	2: "mA", 3: "A", 4: "Ω", 5: "V", 6: "kV", 124: "mV",
	8: "VA", 9: "kVA", 11: "var", 12: "kvar", 15: "PF",
	16: "J", 17: "kJ", 18: "Wh", 19: "kWh", 146: "MWh", 126: "MJ",
	27: "Hz", 129: "kHz",
	29: "%RH", 98: "%",
	31: "m", 30: "mm", 118: "cm",
	37: "lx",
	39: "kg", 44: "kg/h", 42: "kg/s",
	47: "W", 48: "kW", 49: "MW",
	53: "Pa", 54: "kPa", 55: "bar", 133: "hPa", 134: "mbar",
	62: "°C", 63: "K", 64: "°F", 121: "K",
	71: "h", 72: "min", 73: "s", 159: "ms",
	74: "m/s",
	80: "m³", 82: "l",
	84: "cfm", 85: "m³/s", 87: "l/s", 88: "l/min", 135: "m³/h", 136: "l/h",
	96: "ppm", 104: "rpm",
}

// UnitNoUnits is BACnet's no-units.
const UnitNoUnits = 95

// UnitSymbol returns the symbol for a BACnet engineering unit and whether
// it is known.
func UnitSymbol(u uint32) (string, bool) {
	if u == UnitNoUnits {
		return "", true
	}
	s, ok := unitSymbols[u]
	return s, ok
}
