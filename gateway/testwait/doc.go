// Package testwait is what tests across Lintel use to synchronise with
// goroutines they do not own: wait for a condition with a deadline instead
// of sleeping, and collect log output written from other goroutines. It
// imports only the standard library, so any package's tests may use it.
package testwait
