package modbus

import "slices"

// request is one read covering one or more points of the same table.
type request struct {
	table  Table
	start  uint16
	count  uint16
	points []Point
}

// Limits of one Modbus read request.
const (
	maxRegisters = 125
	maxBits      = 2000
)

// size is how many registers (or bits) a point occupies.
func (p Point) size() uint16 {
	switch {
	case p.Table.IsBits(), p.Bit != nil:
		return 1
	case p.Type == String:
		return p.Length
	}
	return uint16(p.Type.Registers())
}

// planRequests merges points of the same table into the fewest read
// requests: points that are adjacent or overlap share a request, up to the
// protocol limits.
func planRequests(points []Point, maxRegs, maxGap uint16) []request {
	if maxRegs == 0 || maxRegs > maxRegisters {
		maxRegs = maxRegisters
	}
	sorted := slices.Clone(points)
	slices.SortStableFunc(sorted, func(a, b Point) int {
		if a.Table != b.Table {
			return int(a.Table) - int(b.Table)
		}
		return int(a.Address) - int(b.Address)
	})
	var plan []request
	for _, p := range sorted {
		size := p.size()
		limit, gap := maxRegs, maxGap
		if p.Table.IsBits() {
			limit, gap = maxBits, max(maxGap, 16*maxGap) // bits are cheap
		}
		if n := len(plan); n > 0 {
			r := &plan[n-1]
			end := max(r.start+r.count, p.Address+size)
			if r.table == p.Table && int(p.Address) <= int(r.start)+int(r.count)+int(gap) && end-r.start <= limit {
				r.count = end - r.start
				r.points = append(r.points, p)
				continue
			}
		}
		plan = append(plan, request{table: p.Table, start: p.Address, count: size, points: []Point{p}})
	}
	return plan
}
