package modbus

import (
	"context"
	"encoding/json"
	"fmt"
	"math"

	"github.com/lintel-gw/lintel/adapters"
)

// CheckWrite validates a write without touching the device and reports
// whether the command must be signed.
func (b *Bus) CheckWrite(w adapters.WriteRequest) (needsSignature bool, err error) {
	_, p, _, _, err := b.prepare(w)
	return p.Critical || !p.UnsignedWrites, err
}

// prepare validates a write and returns what to write: on for a coil, or
// the encoded registers.
func (b *Bus) prepare(w adapters.WriteRequest) (*deviceState, Point, bool, []uint16, error) {
	d, p, err := b.find(w.Device, w.Point)
	if err != nil {
		return nil, p, false, nil, err
	}
	if !p.Writable || (p.Table != Coil && p.Table != Holding) {
		return nil, p, false, nil, fmt.Errorf("%s/%s: %w", w.Device, w.Point, adapters.ErrNotWritable)
	}
	var v any
	if err := json.Unmarshal(w.Value, &v); err != nil {
		return nil, p, false, nil, fmt.Errorf("%s/%s: %w: %v", w.Device, w.Point, adapters.ErrInvalidValue, err)
	}
	if p.Table == Coil {
		on, ok := asBool(v)
		if !ok {
			return nil, p, false, nil, fmt.Errorf("%s/%s: %w: want true/false or 0/1, got %s", w.Device, w.Point, adapters.ErrInvalidValue, w.Value)
		}
		return d, p, on, nil, nil
	}
	if label, isLabel := v.(string); isLabel && len(p.Labels) > 0 {
		for raw, l := range p.Labels {
			if l == label {
				v = float64(raw)
			}
		}
	}
	num, ok := v.(float64)
	if !ok {
		return nil, p, false, nil, fmt.Errorf("%s/%s: %w: want a number or a label, got %s", w.Device, w.Point, adapters.ErrInvalidValue, w.Value)
	}
	if len(p.Labels) > 0 {
		if _, ok := p.Labels[int64(num)]; !ok || num != math.Trunc(num) {
			return nil, p, false, nil, fmt.Errorf("%s/%s: %w: %v is not one of the labelled values", w.Device, w.Point, adapters.ErrInvalidValue, num)
		}
	}
	if p.Min != nil && num < *p.Min || p.Max != nil && num > *p.Max {
		return nil, p, false, nil, fmt.Errorf("%s/%s: %w: %v is outside the allowed range", w.Device, w.Point, adapters.ErrInvalidValue, num)
	}
	scale := p.Scale
	if scale == 0 {
		scale = 1
	}
	regs, err := encodeRegisters(p.Type, p.Order, (num-p.Offset)/scale)
	if err != nil {
		return nil, p, false, nil, fmt.Errorf("%s/%s: %w: %v", w.Device, w.Point, adapters.ErrInvalidValue, err)
	}
	return d, p, false, regs, nil
}

// Write writes an engineering value to a writable point: a JSON bool (or 0/1)
// for coils, a JSON number for holding registers (scale and offset undone,
// within Min and Max). Nothing is sent unless the value is valid.
func (b *Bus) Write(ctx context.Context, w adapters.WriteRequest) error {
	d, p, on, regs, err := b.prepare(w)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	if p.Table == Coil {
		c, err := b.connect(d.Unit)
		if err != nil {
			return err
		}
		if err := c.WriteCoil(p.Address, on); err != nil {
			b.dropClientOnLinkError(err)
			return fmt.Errorf("unit %d: write coil %d: %w", d.Unit, p.Address, err)
		}
		return nil
	}
	c, err := b.connect(d.Unit)
	if err != nil {
		return err
	}
	if len(regs) == 1 {
		err = c.WriteRegister(p.Address, regs[0])
	} else {
		err = c.WriteRegisters(p.Address, regs)
	}
	if err != nil {
		b.dropClientOnLinkError(err)
		return fmt.Errorf("unit %d: write holding %d+%d: %w", d.Unit, p.Address, len(regs), err)
	}
	return nil
}

func (b *Bus) find(device, point string) (*deviceState, Point, error) {
	for _, d := range b.devices {
		if d.Name != device {
			continue
		}
		for _, p := range d.Points {
			if p.Name == point {
				return d, p, nil
			}
		}
	}
	return nil, Point{}, fmt.Errorf("%s/%s: %w", device, point, adapters.ErrUnknownTarget)
}

func asBool(v any) (bool, bool) {
	switch v := v.(type) {
	case bool:
		return v, true
	case float64:
		if v == 0 || v == 1 {
			return v == 1, true
		}
	}
	return false, false
}
