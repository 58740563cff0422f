package doctor

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/switchboard-pbx/switchboard/internal/cause"
)

// CheckStorage names the data directory's file system finding. It is
// reported only when that file system is full or nearly so, or refuses a
// write.
const CheckStorage = "storage"

// Storage is what the doctor found about the file system of the data
// directory, which holds the database.
type Storage struct {
	Checked bool   // false: not looked at (a finding is never made)
	Dir     string // the directory holding the database
	// Free and Total are the bytes available to switchboard and the file
	// system's size; Known is false where they cannot be read.
	Known       bool
	Free, Total uint64
	// WriteErr is why a test write of probeSize bytes into Dir failed, ""
	// when it succeeded.
	WriteErr string
}

// lowSpace is the free space below which the storage check warns: SQLite
// needs room to grow its write-ahead log.
const lowSpace = 16 << 20

// probeSize is the size of the test write.
const probeSize = 64 << 10

// ReadStorage looks at the file system of dir: its free space and whether
// a file of probeSize bytes can be written (and synced) there. The file is
// removed again.
func ReadStorage(dir string) Storage {
	s := Storage{Checked: true, Dir: dir}
	s.Free, s.Total, s.Known = diskSpace(dir)
	f, err := os.CreateTemp(dir, ".doctor-write-test-*")
	if err != nil {
		s.WriteErr = pathErr(err)
		return s
	}
	defer os.Remove(f.Name())
	_, err = f.Write(make([]byte, probeSize))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		s.WriteErr = pathErr(err)
	}
	return s
}

func pathErr(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	if errors.Is(err, syscall.ENOSPC) {
		return "no space left on device"
	}
	return err.Error()
}

// mib writes n bytes in MiB.
func mib(n uint64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// checkStorage adds a finding when the data directory's file system is
// full (fail: the server cannot save registrations and answers them 503)
// or nearly full (warn).
func (d *diag) checkStorage() {
	s := d.in.Storage
	if !s.Checked || (s.WriteErr == "" && (!s.Known || s.Free >= lowSpace)) {
		return
	}
	f := Finding{Check: CheckStorage, Status: Warn}
	if s.Known {
		f.Evidence = append(f.Evidence, fmt.Sprintf("%s free of %s on the file system of %s", mib(s.Free), mib(s.Total), s.Dir))
	}
	fix := "free space on the file system that holds " + s.Dir + " (see df -h " + s.Dir +
		"), or move the data directory to a larger one"
	if s.WriteErr != "" {
		f.Status, f.Cause = Fail, cause.StoreUnavailable
		f.Evidence = append(f.Evidence, "a test write to "+s.Dir+" failed: "+s.WriteErr,
			"switchboard cannot save registrations: REGISTERs get 503 (Retry-After) until it can")
		f.Fix = fix + "; registrations are accepted again by themselves once it can write"
	} else {
		f.Evidence = append(f.Evidence, "the disk is nearly full: when SQLite cannot grow its files, registrations get 503")
		f.Fix = fix
	}
	d.add(f)
}
