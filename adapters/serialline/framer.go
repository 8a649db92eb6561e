package serialline

import (
	"bytes"
	"fmt"
)

// Framing kinds.
const (
	Delimited    = "delimiter"     // frames end with Delimiter
	STXETX       = "stx-etx"       // frames are STX (0x02) … ETX (0x03)
	FixedLength  = "fixed"         // every Length bytes is a frame
	LengthPrefix = "length-prefix" // LengthBytes big-endian length, then that many bytes
)

const (
	stx = 0x02
	etx = 0x03
)

// Framing says how a byte stream splits into frames.
type Framing struct {
	Kind        string
	Delimiter   []byte // Delimited; default "\r\n"
	Length      int    // FixedLength
	LengthBytes int    // LengthPrefix: 1 or 2
	// MaxFrame bounds a frame; longer input is dropped up to the next
	// frame boundary and counted (default 512).
	MaxFrame int
}

func (f *Framing) ensureDefaults() {
	if f.Kind == "" {
		f.Kind = Delimited
	}
	if f.Kind == Delimited && len(f.Delimiter) == 0 {
		f.Delimiter = []byte("\r\n")
	}
	if f.MaxFrame <= 0 {
		f.MaxFrame = 512
	}
	if f.Kind == LengthPrefix && f.LengthBytes == 0 {
		f.LengthBytes = 1
	}
}

// Validate reports a framing that cannot work.
func (f Framing) Validate() error {
	f.ensureDefaults()
	switch f.Kind {
	case Delimited, STXETX:
	case FixedLength:
		if f.Length <= 0 || f.Length > f.MaxFrame {
			return fmt.Errorf("fixed framing needs a frame_length of 1 to max_frame (%d)", f.MaxFrame)
		}
	case LengthPrefix:
		if f.LengthBytes != 1 && f.LengthBytes != 2 {
			return fmt.Errorf("length_bytes %d; want 1 or 2", f.LengthBytes)
		}
	default:
		return fmt.Errorf("unknown framing %q; want delimiter, stx-etx, fixed or length-prefix", f.Kind)
	}
	return nil
}

// Framer splits a byte stream into frames. It is not safe for concurrent use.
type Framer struct {
	f        Framing
	buf      []byte
	skipping bool // dropping an over-long frame until the next boundary
	// Dropped counts over-long frames and garbage runs thrown away.
	Dropped uint64
}

// NewFramer returns a framer; f must be valid.
func NewFramer(f Framing) *Framer {
	f.ensureDefaults()
	return &Framer{f: f}
}

// Feed adds bytes and returns the complete frames they finish, without
// delimiters, STX/ETX or length prefixes. The returned slices are copies.
func (fr *Framer) Feed(data []byte) [][]byte {
	fr.buf = append(fr.buf, data...)
	var frames [][]byte
	switch fr.f.Kind {
	case Delimited:
		frames = fr.delimited()
	case STXETX:
		frames = fr.stxetx()
	case FixedLength:
		for len(fr.buf) >= fr.f.Length {
			frames = append(frames, bytes.Clone(fr.buf[:fr.f.Length]))
			fr.buf = fr.buf[fr.f.Length:]
		}
	case LengthPrefix:
		frames = fr.lengthPrefixed()
	}
	fr.compact()
	return frames
}

func (fr *Framer) delimited() [][]byte {
	var frames [][]byte
	d := fr.f.Delimiter
	for {
		i := bytes.Index(fr.buf, d)
		if i < 0 {
			// Keep a possible partial delimiter at the end; drop the rest of
			// an over-long frame as it comes.
			if len(fr.buf) > fr.f.MaxFrame+len(d) {
				if !fr.skipping {
					fr.Dropped++
				}
				fr.skipping = true
				fr.buf = fr.buf[len(fr.buf)-len(d)+1:]
			}
			return frames
		}
		frame := fr.buf[:i]
		fr.buf = fr.buf[i+len(d):]
		switch {
		case fr.skipping:
			fr.skipping = false // the tail of an over-long frame
		case len(frame) > fr.f.MaxFrame:
			fr.Dropped++
		case len(frame) > 0:
			frames = append(frames, bytes.Clone(frame))
		}
	}
}

func (fr *Framer) stxetx() [][]byte {
	var frames [][]byte
	for {
		start := bytes.IndexByte(fr.buf, stx)
		if start < 0 {
			if len(fr.buf) > 0 {
				fr.Dropped++ // bytes outside a frame
			}
			fr.buf = fr.buf[:0]
			return frames
		}
		if start > 0 {
			fr.Dropped++
			fr.buf = fr.buf[start:]
		}
		body := fr.buf[1:]
		end := bytes.IndexByte(body, etx)
		restart := bytes.IndexByte(body, stx)
		if restart >= 0 && (end < 0 || restart < end) {
			fr.Dropped++ // a frame that never ended: resync at the new STX
			fr.buf = body[restart:]
			continue
		}
		if end < 0 {
			if len(body) > fr.f.MaxFrame {
				fr.Dropped++
				fr.buf = fr.buf[:0]
			}
			return frames
		}
		if end > fr.f.MaxFrame {
			fr.Dropped++
		} else if end > 0 {
			frames = append(frames, bytes.Clone(body[:end]))
		}
		fr.buf = body[end+1:]
	}
}

func (fr *Framer) lengthPrefixed() [][]byte {
	var frames [][]byte
	n := fr.f.LengthBytes
	for len(fr.buf) >= n {
		size := int(fr.buf[0])
		if n == 2 {
			size = size<<8 | int(fr.buf[1])
		}
		if size == 0 || size > fr.f.MaxFrame {
			fr.Dropped++
			fr.buf = fr.buf[1:] // resync one byte at a time
			continue
		}
		if len(fr.buf) < n+size {
			break
		}
		frames = append(frames, bytes.Clone(fr.buf[n:n+size]))
		fr.buf = fr.buf[n+size:]
	}
	return frames
}

// compact keeps the buffer's backing array from growing without bound.
func (fr *Framer) compact() {
	if cap(fr.buf) > 4*fr.f.MaxFrame+4096 && len(fr.buf) < cap(fr.buf)/4 {
		fr.buf = append([]byte(nil), fr.buf...)
	}
}
