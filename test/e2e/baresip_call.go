package e2e

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Dial makes baresip call uri (ctrl_tcp "dial").
func (b *Baresip) Dial(uri string) error {
	_, err := b.Command("dial", uri)
	return err
}

// Hangup ends baresip's current call (ctrl_tcp "hangup").
func (b *Baresip) Hangup() error {
	_, err := b.Command("hangup", "")
	return err
}

// WAVStats describes the audio of a 16-bit PCM WAV file.
type WAVStats struct {
	Seconds float64 // duration
	RMS     float64 // root mean square, full scale = 1.0
	Peak    float64 // largest absolute sample, full scale = 1.0
	// FreqHz estimates the dominant frequency from zero crossings
	// (meaningful for a single tone).
	FreqHz float64
}

// ReadWAVStats reads a RIFF/WAVE file of 16-bit PCM samples (the first
// channel) and measures it.
func ReadWAVStats(path string) (WAVStats, error) {
	var st WAVStats
	b, err := os.ReadFile(path)
	if err != nil {
		return st, err
	}
	if len(b) < 12 || string(b[0:4]) != "RIFF" || string(b[8:12]) != "WAVE" {
		return st, fmt.Errorf("%s: not a WAV file", path)
	}
	var rate, channels, bits int
	var data []byte
	for off := 12; off+8 <= len(b); {
		id := string(b[off : off+4])
		size := int(binary.LittleEndian.Uint32(b[off+4 : off+8]))
		body := b[off+8:]
		if size > len(body) {
			size = len(body) // recording still open: header not final
		}
		switch id {
		case "fmt ":
			if size < 16 {
				return st, fmt.Errorf("%s: short fmt chunk", path)
			}
			if f := binary.LittleEndian.Uint16(body[0:2]); f != 1 {
				return st, fmt.Errorf("%s: format %d is not PCM", path, f)
			}
			channels = int(binary.LittleEndian.Uint16(body[2:4]))
			rate = int(binary.LittleEndian.Uint32(body[4:8]))
			bits = int(binary.LittleEndian.Uint16(body[14:16]))
		case "data":
			data = body[:size]
			if size == 0 {
				data = body // some writers leave the size 0 until close
			}
		}
		off += 8 + size + size%2
	}
	if bits != 16 || channels < 1 || rate <= 0 {
		return st, fmt.Errorf("%s: want 16-bit PCM, got %d bits, %d channels, %d Hz", path, bits, channels, rate)
	}
	if data == nil {
		return st, errors.New(path + ": no data chunk")
	}
	frame := 2 * channels
	n := len(data) / frame
	if n == 0 {
		return st, nil
	}
	var sum float64
	crossings := 0
	prev := 0.0
	for i := 0; i < n; i++ {
		v := float64(int16(binary.LittleEndian.Uint16(data[i*frame:]))) / 32768
		sum += v * v
		if a := math.Abs(v); a > st.Peak {
			st.Peak = a
		}
		if i > 0 && (prev < 0) != (v < 0) {
			crossings++
		}
		prev = v
	}
	st.Seconds = float64(n) / float64(rate)
	st.RMS = math.Sqrt(sum / float64(n))
	st.FreqHz = float64(crossings) / 2 / st.Seconds
	return st, nil
}

// Recordings returns the WAV files the sndfile module wrote in dir whose
// name contains part ("dec": what the phone received and played, "enc":
// what it sent), largest first.
func Recordings(dir, part string) []string {
	files, _ := filepath.Glob(filepath.Join(dir, "*.wav"))
	var out []string
	for _, f := range files {
		if strings.Contains(filepath.Base(f), part) {
			out = append(out, f)
		}
	}
	size := func(p string) int64 {
		if fi, err := os.Stat(p); err == nil {
			return fi.Size()
		}
		return 0
	}
	sort.Slice(out, func(i, j int) bool { return size(out[i]) > size(out[j]) })
	return out
}
