package ftpd

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	ftpserver "github.com/fclairamb/ftpserverlib"

	"github.com/kubeftp/ftp-operator/ftpd/fileconfig"
)

// Quota limits what one user may store (fileconfig.Quota; zero fields are no limit).
type Quota = fileconfig.Quota

// Storage limits: a full volume, a user's quota, the maximum file size.
//
// Usage (bytes and files of a home) is what quotas are checked against. It is computed by walking
// the home (regular files, the daemon's upload temporaries excluded, symlinks not followed)
// when a user with a bytes or files quota is declared, again every UsageScanInterval, and it
// follows at once every change made over FTP: uploads when they complete (or as they are
// written, for APPE and resumed STOR, which write in place), DELE, RNTO and SITE RMDIR. The walk
// catches up with changes made to the volume by anything else (a batch job that consumes
// uploaded files, another server sharing the claim). Usage belongs to a directory tree, not to
// whoever wrote it: users sharing a home share its usage, and a change inside a home nested in
// another's counts for both.
//
// An upload in flight reserves what it has written against the uploader's quota, so concurrent
// uploads of one user can never together exceed it. The file an atomic upload replaces still
// counts until the upload completes (both are on the volume until the rename), so replacing a
// file needs room for the new one.

// storageError is an upload refused or cut short for lack of space. It is ftpserverlib's
// ErrStorageExceeded, which it answers with 552 (exceeded storage allocation: quotas and the
// maximum file size); a full volume is answered 452 instead (insufficient storage space: a
// condition of the server, which may clear), see controlConn.Write.
type storageError struct {
	msg        string
	fullVolume bool
}

func (e *storageError) Error() string        { return e.msg }
func (e *storageError) Is(target error) bool { return target == ftpserver.ErrStorageExceeded }

// noSpace maps a filesystem error to the storage error the client gets, naming the virtual path;
// other errors are only rewritten to name the virtual path.
func noSpace(op, vpath string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, syscall.ENOSPC):
		err = &storageError{msg: "no space left on the server's volume", fullVolume: true}
	case errors.Is(err, syscall.EDQUOT):
		err = &storageError{msg: "the storage quota of the server's volume is exhausted", fullVolume: true}
	}
	return virtualErr(op, vpath, err)
}

// quotaError is the error of an upload that would exceed a user's limit.
func quotaError(format string, args ...any) error {
	return &storageError{msg: fmt.Sprintf(format, args...)}
}

// usageTracker is the usage of one directory tree (a home that some user's quota is about).
type usageTracker struct {
	dir string // absolute, symlinks resolved

	ready chan struct{} // closed once the first walk is done

	mu            sync.Mutex
	bytes, files  int64 // what is on the volume (as of the last walk plus the changes since)
	reservedBytes int64 // written by atomic uploads in flight, not on the volume under their name yet
	reservedFiles int64 // files those uploads will create
	gen           uint64
	scanning      bool
	nextScan      time.Time
}

// usage is what the metrics report; known is false until the first walk is done.
func (tr *usageTracker) usage() (bytes, files int64, known bool) {
	select {
	case <-tr.ready:
	default:
		return 0, 0, false
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.bytes, tr.files, true
}

// usageWaitTimeout bounds how long an upload waits for the first walk of its home.
const usageWaitTimeout = 30 * time.Second

// reserve admits bytes and files more for a user whose quota is q, or says which limit they
// would exceed. The first walk of the home must be done.
func (tr *usageTracker) reserve(user string, q Quota, bytes, files int64) error {
	if err := tr.waitReady(); err != nil {
		return err
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if q.MaxBytes > 0 && bytes > 0 && tr.bytes+tr.reservedBytes+bytes > q.MaxBytes {
		return quotaError("quota exceeded: %s may store %d bytes, %d are used", user, q.MaxBytes, tr.bytes+tr.reservedBytes)
	}
	if q.MaxFiles > 0 && files > 0 && tr.files+tr.reservedFiles+files > q.MaxFiles {
		return quotaError("quota exceeded: %s may store %d files, %d are used", user, q.MaxFiles, tr.files+tr.reservedFiles)
	}
	tr.reservedBytes += bytes
	tr.reservedFiles += files
	return nil
}

// waitReady waits for the first walk of the home, for at most usageWaitTimeout.
func (tr *usageTracker) waitReady() error {
	select {
	case <-tr.ready:
		return nil
	default:
	}
	timer := time.NewTimer(usageWaitTimeout)
	defer timer.Stop()
	select {
	case <-tr.ready:
		return nil
	case <-timer.C:
		return &storageError{msg: "the usage of the home is still being computed; try again later", fullVolume: true}
	}
}

func (tr *usageTracker) release(bytes, files int64) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.reservedBytes -= bytes
	tr.reservedFiles -= files
}

// add accounts for a change on the volume.
func (tr *usageTracker) add(bytes, files int64) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.bytes += bytes
	tr.files += files
	tr.gen++
}

// rescanSoon makes the next watcher tick walk the tree again.
func (tr *usageTracker) rescanSoon() {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.gen++ // a walk running now may have missed the change
	tr.nextScan = time.Time{}
}

func (tr *usageTracker) contains(real string) bool {
	return real == tr.dir || strings.HasPrefix(real, tr.dir+string(filepath.Separator))
}

// usageRegistry holds the trackers of the homes that have a quota, by directory.
type usageRegistry struct {
	interval time.Duration // UsageScanInterval

	mu       sync.Mutex
	trackers map[string]*usageTracker
	// commitMu serializes what a completed atomic upload does (look at the file it replaces,
	// rename, account), so that two uploads to one name account for what each really replaced.
	commitMu sync.Mutex
}

func newUsageRegistry(interval time.Duration) *usageRegistry {
	return &usageRegistry{interval: interval, trackers: map[string]*usageTracker{}}
}

// tracker returns the tracker of dir (real path), creating it and starting its first walk.
func (r *usageRegistry) tracker(dir string) *usageTracker {
	r.mu.Lock()
	defer r.mu.Unlock()
	if tr := r.trackers[dir]; tr != nil {
		return tr
	}
	tr := &usageTracker{dir: dir, ready: make(chan struct{}), scanning: true}
	r.trackers[dir] = tr
	go r.scan(tr)
	return tr
}

// retain drops the trackers of directories no declared user has a quota on (after a reload).
// Sessions that hold one keep using it.
func (r *usageRegistry) retain(dirs map[string]bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for dir := range r.trackers {
		if !dirs[dir] {
			delete(r.trackers, dir)
		}
	}
}

// containing lists the trackers whose tree holds real (none for a nil registry).
func (r *usageRegistry) containing(real string) []*usageTracker {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*usageTracker
	for _, tr := range r.trackers {
		if tr.contains(real) {
			out = append(out, tr)
		}
	}
	return out
}

// changed accounts for a change made over FTP at real (a path that exists or existed on the
// volume): every tree that holds it grows or shrinks by bytes and files.
func (r *usageRegistry) changed(real string, bytes, files int64) {
	if bytes == 0 && files == 0 {
		return
	}
	for _, tr := range r.containing(real) {
		tr.add(bytes, files)
	}
}

// rescanSoon makes the trees holding real walk again soon: a change whose size is not known
// (a directory moved across trees, a recursive removal that failed half way).
func (r *usageRegistry) rescanSoon(real string) {
	for _, tr := range r.containing(real) {
		tr.rescanSoon()
	}
}

// rescanInside makes the trees that lie inside the directory real walk again soon: it was
// removed or moved with them.
func (r *usageRegistry) rescanInside(real string) {
	if r == nil {
		return
	}
	r.mu.Lock()
	var inside []*usageTracker
	for _, tr := range r.trackers {
		if strings.HasPrefix(tr.dir, real+string(filepath.Separator)) {
			inside = append(inside, tr)
		}
	}
	r.mu.Unlock()
	for _, tr := range inside {
		tr.rescanSoon()
	}
}

// renamed accounts for RNFR/RNTO of a regular file (fi) over target (nil if there was none):
// trees that hold only one of the two names gain or lose the file. A directory moved from or
// into a tree makes that tree walk again.
func (r *usageRegistry) renamed(oldReal, newReal string, fi, target fs.FileInfo) {
	if target != nil && target.Mode().IsRegular() {
		r.changed(newReal, -target.Size(), -1)
	}
	if fi.IsDir() {
		r.rescanInside(oldReal)
	}
	for _, tr := range r.containing(oldReal) {
		if tr.contains(newReal) {
			continue
		}
		if fi.Mode().IsRegular() {
			tr.add(-fi.Size(), -1)
		} else if fi.IsDir() {
			tr.rescanSoon()
		}
	}
	for _, tr := range r.containing(newReal) {
		if tr.contains(oldReal) {
			continue
		}
		if fi.Mode().IsRegular() {
			tr.add(fi.Size(), 1)
		} else if fi.IsDir() {
			tr.rescanSoon()
		}
	}
}

// rescanDue starts the walks that are due (called from the watcher).
func (r *usageRegistry) rescanDue(now time.Time) {
	r.mu.Lock()
	var due []*usageTracker
	for _, tr := range r.trackers {
		tr.mu.Lock()
		if !tr.scanning && !now.Before(tr.nextScan) {
			tr.scanning = true
			due = append(due, tr)
		}
		tr.mu.Unlock()
	}
	r.mu.Unlock()
	for _, tr := range due {
		go r.scan(tr)
	}
}

// usageRetry is how soon a walk that overlapped a change is tried again.
const usageRetry = 10 * time.Second

// scan walks tr's tree. Changes made over FTP while it ran may or may not have been seen by the
// walk, so its result replaces the tracked usage only if none happened; otherwise it is tried
// again soon. The first walk has nothing to fall back on: it keeps the changes made meanwhile
// on top of what it found (at worst counting such a change twice, until the next walk).
func (r *usageRegistry) scan(tr *usageTracker) {
	tr.mu.Lock()
	gen := tr.gen
	tr.mu.Unlock()
	bytes, files, err := walkUsage(tr.dir)

	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.scanning = false
	first := false
	select {
	case <-tr.ready:
	default:
		first = true
	}
	switch {
	case err != nil:
		// The home is gone or unreadable: logins fail until it is back; keep what is known.
		tr.nextScan = time.Now().Add(usageRetry)
	case tr.gen == gen:
		tr.bytes, tr.files = bytes, files
		tr.nextScan = time.Now().Add(r.interval)
	case first:
		tr.bytes += bytes
		tr.files += files
		tr.nextScan = time.Now().Add(usageRetry)
	default:
		tr.nextScan = time.Now().Add(usageRetry)
	}
	if first {
		close(tr.ready)
	}
}

// walkUsage sums the sizes and counts the regular files under dir, skipping upload temporaries
// and unreadable parts, without following symlinks.
func walkUsage(dir string) (bytes, files int64, err error) {
	if _, err := os.Stat(dir); err != nil {
		return 0, 0, err
	}
	err = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || strings.HasPrefix(d.Name(), tempPrefix) {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil // removed meanwhile
		}
		bytes += fi.Size()
		files++
		return nil
	})
	return bytes, files, err
}

// treeUsage is walkUsage of a subtree about to be removed (SITE RMDIR); 0 when unreadable.
func treeUsage(dir string) (bytes, files int64) {
	bytes, files, _ = walkUsage(dir)
	return bytes, files
}
