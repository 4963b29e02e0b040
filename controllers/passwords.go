package controllers

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"sync"

	"golang.org/x/crypto/bcrypt"

	"github.com/kubeftp/ftp-operator/ftpd/fileconfig"
)

// passwordHasher turns the passwords from users' Secrets into the bcrypt hashes the daemon gets.
//
// bcrypt salts randomly, so hashing the same password twice gives two hashes; rewriting the
// users Secret on every reconcile would never reach a steady state. So a hash is reused while it
// still matches: remembered in memory, keyed by an HMAC of the password under a per-process
// key (nothing reversible is kept), and after a restart verified once against the hash already
// in the users Secret.
type passwordHasher struct {
	cost int

	mu    sync.Mutex
	key   []byte
	known map[string]string // HMAC(password) -> bcrypt hash
}

func newPasswordHasher(cost int) *passwordHasher {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		panic(fmt.Sprintf("read random key: %v", err)) // crypto/rand does not fail on Linux
	}
	return &passwordHasher{cost: cost, key: key, known: map[string]string{}}
}

// hash returns a bcrypt hash for secret: secret itself when it already is one, the remembered
// or previous hash when it matches, else a new hash.
func (h *passwordHasher) hash(secret []byte, previous string) (string, error) {
	if fileconfig.IsBcryptHash(string(secret)) {
		return string(secret), nil
	}
	if len(secret) == 0 {
		return "", fmt.Errorf("the password is empty")
	}
	if len(secret) > 72 {
		return "", fmt.Errorf("the password is longer than bcrypt's 72-byte limit")
	}
	mac := hmac.New(sha256.New, h.key)
	mac.Write(secret)
	id := string(mac.Sum(nil))

	h.mu.Lock()
	known, ok := h.known[id]
	h.mu.Unlock()
	if ok {
		return known, nil
	}
	hash := previous
	if previous == "" || bcrypt.CompareHashAndPassword([]byte(previous), secret) != nil {
		generated, err := bcrypt.GenerateFromPassword(secret, h.cost)
		if err != nil {
			return "", fmt.Errorf("hash password: %w", err)
		}
		hash = string(generated)
	}
	h.mu.Lock()
	h.known[id] = hash
	h.mu.Unlock()
	return hash, nil
}
