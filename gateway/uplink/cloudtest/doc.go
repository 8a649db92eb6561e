// Package cloudtest runs a stand-in for the cloud broker on loopback: an
// in-process mochi broker with a TLS listener that requires a client
// certificate from a given CA. Tests use it to count what really arrived and
// which PUBACKs were really sent; `lintel demo` uses it as its cloud.
package cloudtest
