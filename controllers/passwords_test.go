package controllers

import (
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func TestPasswordHasherIsStableAndCorrect(t *testing.T) {
	h := newPasswordHasher(bcrypt.MinCost)
	first, err := h.hash([]byte("s3cret"), "")
	if err != nil {
		t.Fatal(err)
	}
	if bcrypt.CompareHashAndPassword([]byte(first), []byte("s3cret")) != nil {
		t.Fatal("hash does not verify the password")
	}
	again, _ := h.hash([]byte("s3cret"), "")
	if again != first {
		t.Fatal("the same password hashed twice gave two hashes: the users Secret would be rewritten on every reconcile")
	}
	// A new process (empty memory) keeps the hash already in the users Secret.
	restarted := newPasswordHasher(bcrypt.MinCost)
	if kept, _ := restarted.hash([]byte("s3cret"), first); kept != first {
		t.Fatal("after a restart, a matching previous hash was not reused")
	}
	// A changed password gets a new hash even when a previous one exists.
	changed, _ := restarted.hash([]byte("n3w"), first)
	if changed == first || bcrypt.CompareHashAndPassword([]byte(changed), []byte("n3w")) != nil {
		t.Fatal("a changed password did not get a new, correct hash")
	}
}

func TestPasswordHasherPassesHashesThroughAndRejectsBadInput(t *testing.T) {
	h := newPasswordHasher(bcrypt.MinCost)
	given, _ := bcrypt.GenerateFromPassword([]byte("x"), bcrypt.MinCost)
	if got, err := h.hash(given, ""); err != nil || got != string(given) {
		t.Fatalf("a bcrypt hash in the Secret must be used as is; got %q, %v", got, err)
	}
	if _, err := h.hash(nil, ""); err == nil {
		t.Fatal("an empty password was accepted")
	}
	long := make([]byte, 73)
	for i := range long {
		long[i] = 'a'
	}
	if _, err := h.hash(long, ""); err == nil {
		t.Fatal("a password over 72 bytes was accepted (bcrypt would silently truncate it)")
	}
}
