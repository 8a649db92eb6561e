// Package config reads lintel.yaml: strict YAML (goccy/go-yaml), defaults in
// one place (ensureDefaults), and validation that reports every problem at
// once, each with file, line, key path and the bad value, e.g.
//
//	/etc/lintel/lintel.yaml:42: devices[2].points[0].type: unknown type "flaot32"; want one of bool, int16, …
//
// Unknown keys are errors. Durations are Go durations ("500ms"), sizes take
// units ("512MiB"). Relative file paths are resolved against the config
// file's directory. Files named in the config are not opened here; `lintel
// run` opens them and names the key when one is missing.
package config
