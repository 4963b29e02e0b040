package ftpd

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// errBadCredentials is the only error a client sees for a failed login, whether the user is
// unknown or the password is wrong.
var errBadCredentials = errors.New("invalid user name or password")

// Names the anonymous account answers to.
var anonymousNames = map[string]bool{"anonymous": true, "ftp": true}

// account is a user prepared for authentication.
type account struct {
	User
	// homePath is the absolute home directory. It is resolved (symlinks, existence) at each login
	// rather than once, because the volume's content can change while the daemon runs.
	homePath string
	// confined homes (derived from Root) must resolve inside Root: a symlinked home cannot lead
	// out of the volume.
	confined  bool
	anonymous bool
	// usage is the home's usage tracker when the account has a bytes or files quota and its
	// home existed when the account was prepared (metrics); logins look it up again.
	usage *usageTracker
	// Exactly one of hash (bcrypt) and plainSum (SHA-256 of the plain password) is set.
	hash     []byte
	plainSum [sha256.Size]byte
}

// userDB authenticates users. It is immutable once built.
type userDB struct {
	byName map[string]*account
	anon   *account // nil unless anonymous access is on
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
				return nil, fmt.Errorf("user %s: invalid bcrypt hash: %w", a.Name, err)
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
			return nil, fmt.Errorf("prepare dummy bcrypt hash: %w", err)
		}
		db.dummyHash = h
	}
	return db, nil
}

// authenticate returns the account for name if password matches. reason is for the logs only
// ("unknown_user" or "bad_password"); the error is the same in both cases.
func (db *userDB) authenticate(name, password string) (a *account, reason string, err error) {
	a, ok := db.byName[name]
	if !ok && db.anon != nil && anonymousNames[strings.ToLower(name)] {
		// Any password: by convention anonymous users type an e-mail address.
		return db.anon, "", nil
	}
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

// realHome resolves the account's home for a login: it must exist, be a directory and, for
// confined homes, stay inside root (the real, symlink-free data root).
func (a *account) realHome(root string) (string, error) {
	real, err := filepath.EvalSymlinks(a.homePath)
	if err != nil {
		return "", fmt.Errorf("home of %s: %w", a.Name, err)
	}
	if a.confined && real != root && !strings.HasPrefix(real, root+string(filepath.Separator)) {
		return "", fmt.Errorf("home of %s resolves to %s, outside the data root", a.Name, real)
	}
	fi, err := os.Stat(real)
	if err != nil {
		return "", fmt.Errorf("home of %s: %w", a.Name, err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("home of %s: %s is not a directory", a.Name, a.homePath)
	}
	return real, nil
}
