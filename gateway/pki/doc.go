// Package pki mints the small certificate authorities that `lintel demo` and
// the tests need: a CA, server certificates for loopback brokers and client
// certificates for mutual TLS. Keys are ECDSA P-256. Production certificates
// come from the operator's own PKI; nothing here is used by `lintel run`.
package pki
