package sqlite

import (
	"testing"

	"github.com/switchboard-pbx/switchboard/internal/store/storetest"
)

// TestContract runs the contract every storage backend passes.
func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Backend { return openTest(t, t.TempDir()) })
}
