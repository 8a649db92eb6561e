package bacnet

import (
	"encoding/hex"
	"testing"
)

// FuzzDecodeAPDU feeds arbitrary octets to every decoder (as a datagram, an
// NPDU and an APDU with its service data): none may panic,
// and an APDU header that decodes must encode back to a decodable header.
// The seeds are in testdata/fuzz/FuzzDecodeAPDU plus the golden examples.
func FuzzDecodeAPDU(f *testing.F) {
	for _, h := range []string{
		"00000 10C0C00000005 1955",
		"30010C0C0000000519553E444290999A3F",
		"30F10E0C000000101E2955 4E444290999A4F 2967 4E91004F 1F",
		"00045 90F0C00800001 19553E44433400003F 4908",
		"1008 090A1B011170",
		"1000 C40200000D 2205C4 9103 2163",
		"1002 0912 1C02000004 2C0000000A 3900 4E 0955 2E4442820000 2F 096F 2E820400 2F 4F",
		"50010C91019 11F",
		"7101 04",
	} {
		b, err := hex.DecodeString(stripSpaces(h))
		if err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		DecodeFrame(b)
		for _, fn := range []byte{BVLCOriginalUnicastNPDU, BVLCForwardedNPDU} {
			if fr, err := DecodeFrame(EncodeBVLC(fn, b)); err == nil && fr.APDU != nil {
				DecodeAPDU(fr.APDU) // b as an NPDU: routed addresses, hop counts
			}
		}
		a, err := DecodeAPDU(b)
		if err != nil {
			return
		}
		if _, err := DecodeAPDU(a.Encode()); err != nil && a.Type != ErrorPDU {
			t.Fatalf("re-encoded header of % x does not decode: %v", b, err)
		}
		d := a.Data
		DecodeWhoIs(d)
		DecodeIAm(d)
		DecodeReadProperty(d)
		DecodeReadPropertyACK(d)
		DecodeReadPropertyMultiple(d)
		DecodeReadPropertyMultipleACK(d)
		DecodeWriteProperty(d)
		DecodeSubscribeCOV(d)
		DecodeCOVNotification(d)
	})
}

func stripSpaces(s string) string {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != ' ' {
			out = append(out, s[i])
		}
	}
	return string(out)
}
