// Package bacnettest is a BACnet/IP device simulator on loopback UDP for
// tests and demos: it answers Who-Is, ReadProperty, ReadPropertyMultiple,
// WriteProperty (with a priority array) and SubscribeCOV, sends unconfirmed
// COV notifications on change, and has knobs to go silent, answer errors,
// refuse COV, refuse or send segmented responses, and sit behind a router.
// StartAHU runs an air handling unit controller whose values move, for the
// demo.
package bacnettest
