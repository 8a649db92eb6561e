package localbroker

import "github.com/lintel-gw/lintel/buffer"

// Priority is the delivery class of a message Publish forwards: High ones
// (status, alarms, command results) reach the cloud first and are evicted
// from a full buffer last.
type Priority uint8

// Delivery classes of Publish.
const (
	Normal Priority = iota
	High
)

// record is the class the spool stores.
func (p Priority) record() buffer.Priority {
	if p == High {
		return buffer.High
	}
	return buffer.Normal
}
