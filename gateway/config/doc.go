// Package config reads lintel.yaml: strict YAML (goccy/go-yaml), defaults in
// one place (ensureDefaults), and validation that reports every problem at
// once, each with file, line, key path and the bad value, e.g.
//
//	/etc/lintel/lintel.yaml:42: devices[2].points[0].type: unknown type "flaot32"; want one of bool, int16, …
//
// Unknown keys are errors. Durations are Go durations ("500ms"), sizes take
// units ("512MiB"); both decode as plain strings first, so loading stays
// linear in the file size (BenchmarkLoad). Relative file paths are resolved
// against the config file's directory. A point that came from a profile is
// reported at its line in the profile file. A key whose 0 would be replaced
// by a default is either kept (unit: 0 is unit 0) or refused when written
// as 0 (uplink.ack_timeout, uplink.dead_letter_after).
//
// A bacnet-ip bus, its devices and points take their own keys (BACnetBus,
// BACnetDevice, BACnetPoint, inline in Bus, Device and Point); each key is
// checked with its line, then the adapter's bacnet.Config.Validate runs on
// what passed, its errors reported at the bus. On such a point, priority is
// the write priority 1-16 (1 and 2 only with allow_life_safety).
//
// Writes need signed commands unless a point or serial command says
// unsigned_writes: true; check warns when such a target looks like a door,
// lock, alarm or relay (UnsignedTargets). A serial event's point template
// is proven from its pattern to fill one valid topic level: no capture it
// uses can hold / + # $ NUL, braces, control characters or invalid UTF-8,
// and the level cannot be empty. Config.Sample looks at captured values
// (`lintel check --sample`).
//
// Files named in the config are not opened here; `lintel run` opens them
// and names the key when one is missing.
package config
