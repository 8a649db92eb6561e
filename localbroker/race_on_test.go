//go:build race

package localbroker

// raceEnabled: the race detector multiplies memory use, so RSS figures mean
// nothing under it.
const raceEnabled = true
