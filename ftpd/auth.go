package ftpd

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// errBadCredentials is the only error a client sees for a failed login, whether the user is
// unknown or the password is wrong.
var errBadCredentials = errors.New("invalid user name or password")

// account is a user prepared for authentication.
type account struct {
	User
	home string // absolute, symlinks resolved
	// Exactly one of hash (bcrypt) and plainSum (SHA-256 of the plain password) is set.
	hash     []byte
	plainSum [sha256.Size]byte
}

// userDB authenticates users. It is immutable once built.
type userDB struct {
	byName map[string]*account
	// dummyHash is compared against for unknown users when any user has a bcrypt hash, so that an
	// unknown user costs about as much time as a wrong password.
	dummyHash []byte
}

func isBcryptHash(s string) bool {
	return strings.HasPrefix(s, "$2a$") || strings.HasPrefix(s, "$2b$") || strings.HasPrefix(s, "$2y$")
}

func newUserDB(accounts []*account) (*userDB, error) {
	db := &userDB{byName: make(map[string]*account, len(accounts))}
	maxCost := 0
	for _, a := range accounts {
		if isBcryptHash(a.Password) {
			cost, err := bcrypt.Cost([]byte(a.Password))
			if err != nil {
				return nil, errors.New("user " + a.Name + ": invalid bcrypt hash: " + err.Error())
			}
			maxCost = max(maxCost, cost)
			a.hash = []byte(a.Password)
		} else {
			a.plainSum = sha256.Sum256([]byte(a.Password))
		}
		db.byName[a.Name] = a
	}
	if maxCost > 0 {
		h, err := bcrypt.GenerateFromPassword([]byte("ftpd-dummy-password"), maxCost)
		if err != nil {
			return nil, err
		}
		db.dummyHash = h
	}
	return db, nil
}

// authenticate returns the account for name if password matches. reason is for the logs only
// ("unknown_user" or "bad_password"); the error is the same in both cases.
func (db *userDB) authenticate(name, password string) (a *account, reason string, err error) {
	a, ok := db.byName[name]
	if !ok {
		// Spend comparable time on unknown users.
		if db.dummyHash != nil {
			_ = bcrypt.CompareHashAndPassword(db.dummyHash, []byte(password))
		} else {
			var zero [sha256.Size]byte
			sum := sha256.Sum256([]byte(password))
			subtle.ConstantTimeCompare(sum[:], zero[:])
		}
		return nil, "unknown_user", errBadCredentials
	}
	if a.hash != nil {
		if bcrypt.CompareHashAndPassword(a.hash, []byte(password)) != nil {
			return nil, "bad_password", errBadCredentials
		}
		return a, "", nil
	}
	// Hashing first makes the comparison independent of the password lengths.
	sum := sha256.Sum256([]byte(password))
	if subtle.ConstantTimeCompare(sum[:], a.plainSum[:]) != 1 {
		return nil, "bad_password", errBadCredentials
	}
	return a, "", nil
}
