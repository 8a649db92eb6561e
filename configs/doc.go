// Package configs holds Lintel's shipped configuration files: demo.yaml (run
// by `lintel demo`, embedded here), the annotated lintel.example.yaml. Every
// file in this folder is parsed by a test.
package configs
