// Package demo runs `lintel demo`: the whole product on loopback. It starts
// the simulated building, a cloud broker that requires client certificates,
// generates a CA, certificates and a read-only local user, runs a Gateway
// on configs/demo.yaml and prints what reaches the cloud as it arrives.
package demo
