package webauth

import (
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// TestDummyHashCost: the dummy hash an unknown admin's login is compared
// against is a bcrypt hash with the cost of real ones, so that both take as
// long, and a login without a hash is refused even with its preimage.
func TestDummyHashCost(t *testing.T) {
	c, err := bcrypt.Cost([]byte(dummyHash))
	if err != nil || c != Cost {
		t.Fatalf("dummyHash cost %d (%v), want %d", c, err, Cost)
	}
	if VerifyPassword("", "not a password of anyone") {
		t.Fatal("VerifyPassword with no hash said true")
	}
}
