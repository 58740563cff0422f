package webauth

import (
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// TestDummyHashCost: the dummy hash an unknown admin's login is compared
// against has the cost of real hashes, so that both take as long, and it
// matches no password a login could try (VerifyPassword is false).
func TestDummyHashCost(t *testing.T) {
	c, err := bcrypt.Cost([]byte(dummyHash))
	if err != nil || c != Cost {
		t.Fatalf("dummyHash cost %d (%v), want %d", c, err, Cost)
	}
	if VerifyPassword("", "not a password of anyone") {
		t.Fatal("VerifyPassword with no hash said true")
	}
	h, err := HashPassword("correct horse 1")
	if err != nil {
		t.Fatal(err)
	}
	if !VerifyPassword(h, "correct horse 1") || VerifyPassword(h, "correct horse 2") {
		t.Fatal("VerifyPassword does not tell the right password from a wrong one")
	}
}
