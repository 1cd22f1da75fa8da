// Package store is sipedge's embedded durable key-value log.
//
// Every Put and Delete is appended to a write-ahead log (WAL) and fsynced
// before its done callback runs, and all the records queued while one fsync
// runs are written and fsynced together (group commit). A REGISTER is thus
// answered only once its binding is on disk, and the goroutine that handled
// it never waits for the disk: it hands over a callback and moves on.
//
// # Files
//
// A store directory holds, for generations g:
//
//	wal-<g>   records appended since snapshot g was taken
//	snap-<g>  the live set as it was at the end of wal-<g-1>
//	LOCK      held (flock) while a process has the store open
//
// The state is the newest complete snapshot G (none: empty) followed by
// wal-G, wal-G+1, ... in order. A snapshot is written to snap-<g>.tmp,
// fsynced and renamed, so snap-<g> either exists whole or not at all.
//
// # Record
//
//	u32 length of body (little endian)
//	u32 CRC-32C (Castagnoli) of body
//	body: type (1 put, 2 delete, 3 snapshot end) | uvarint key length | key | value
//
// On Open, a torn or corrupt record at the end of the log (a crash in the
// middle of a write) is cut off with a log line: such a record was never
// acknowledged, since done runs only after the fsync that covers it.
//
// # Compaction
//
// When the log outgrows Options.CompactAt (and the live set, so that a
// snapshot never costs more than the log it replaces), the committer
// switches generations between two batches: it freezes the live map,
// starts an empty overlay map for later writes, and opens wal-<g+1>; that
// takes a file creation and a directory fsync. A separate goroutine then
// writes the frozen map to snap-<g+1> while Puts keep flowing into the new
// log and the overlay, and finally folds the overlay (usually small) back
// into the map. Put is never blocked by the snapshot; it only waits for
// the short fold. A crash at any point leaves either the old snapshot plus
// both logs or the new snapshot plus the new log, and both replay to the
// same state.
//
// An owner that holds the live set in memory anyway (the registrar) calls
// Own after Load: the store then drops its map and a snapshot asks the
// owner to emit the records, so the bindings are not held twice.
package store

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"sipedge/internal/rawio"
)

// Options tune a store. The zero value is usable.
type Options struct {
	// SyncInterval is the longest the committer waits, after the first
	// record of a batch arrives, for more records to share its fsync.
	// 0 means the default, 1 ms; a negative value means no wait: fsync as
	// soon as the committer is free (records that arrive during an fsync
	// still share the next one).
	SyncInterval time.Duration
	// CompactAt is the log size (bytes, all generations since the last
	// snapshot) from which a snapshot is taken; default 64 MiB. A snapshot
	// is only taken once the log is also at least as large as the live set.
	CompactAt int64
	// Logger receives recovery and compaction events; default slog.Default().
	Logger *slog.Logger
	// NoSync skips fsync: a record is durable once written to the log
	// (it survives the process, not the machine). store.sync: write.
	NoSync bool

	// syncFile replaces (*os.File).Sync in tests of this package.
	syncFile func(*os.File) error
	// beforeSnapshot runs on the snapshot goroutine before it writes
	// (tests of this package).
	beforeSnapshot func()
}

// Stats are counters since Open.
type Stats struct {
	Records        uint64        // records written to the log (Put and Delete)
	Batches        uint64        // group commits (one write and at most one fsync each)
	Fsyncs         uint64        // log fsyncs
	Bytes          uint64        // bytes appended to the log
	LogBytes       int64         // current log size: all generations since the last snapshot
	Keys           int           // live keys
	Compactions    uint64        // snapshots written
	LastFsync      time.Duration // duration of the last log fsync
	LastCompaction time.Duration // duration of the last snapshot
}

// ErrClosed is reported for operations after Close.
var ErrClosed = errors.New("store: closed")

const (
	recPut byte = 1
	recDel byte = 2
	recEnd byte = 3 // last record of a snapshot; its value is the uvarint record count

	hdrLen = 8
	// maxPending bounds the bytes queued for the committer; beyond it Put
	// waits (back-pressure when the disk cannot keep up).
	maxPending = 64 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Store is an open store. Its methods are safe for concurrent use.
type Store struct {
	dir      string
	opt      Options
	log      *slog.Logger
	lockFile *os.File

	mu sync.Mutex
	// live maps key → latest value. Both are strings viewing one
	// allocation (a string map slot is 32 bytes, a []byte one 40). While a
	// snapshot is being written, frozen is the map being written, live
	// the overlay of values put since the freeze and dels the keys
	// deleted since the freeze.
	live     map[string]string
	frozen   map[string]string
	dels     map[string]struct{}
	snapping bool // a snapshot is being written
	// dump, once set by Own, writes the live set for a snapshot; the maps
	// are then dropped (the owner already holds every record in memory,
	// in its own form, so a second copy here would double the memory).
	dump      func(emit func(key, val []byte) error) error
	keys      int   // live keys
	liveBytes int64 // size of the live set as records
	pending   []byte
	dones     []Done
	npending  int // records in pending
	kicked    bool
	closed    bool
	err       error // sticky write or fsync failure
	room      sync.Cond
	nextTry   int64 // log size before another compaction attempt after a failure

	kick chan struct{}
	wg   sync.WaitGroup

	// committing: a goroutine is in drain (the committer, or a reader in
	// Leave); only it touches the fields below (and spare, spareDones,
	// which it swaps under mu).
	committing bool
	spare      []byte
	spareDones []Done
	scopes     atomic.Int32 // open Enter/Leave stretches (NoSync only)
	wal        *os.File
	gen        uint64
	syncFn     func(*os.File) error
	hooks      atomic.Pointer[BatchHooks]

	logBytes atomic.Int64

	records, batches, fsyncs, bytes, compactions atomic.Uint64
	lastFsync, lastCompaction                    atomic.Int64
}

// Open opens the store in dir, creating dir if needed, and replays the
// newest snapshot and the log after it.
func Open(dir string, opt Options) (*Store, error) {
	if opt.SyncInterval == 0 {
		opt.SyncInterval = time.Millisecond
	}
	if opt.CompactAt <= 0 {
		opt.CompactAt = 64 << 20
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	lf, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	s := &Store{dir: dir, opt: opt, log: opt.Logger, lockFile: lf,
		live: make(map[string]string), kick: make(chan struct{}, 1), syncFn: opt.syncFile}
	if s.syncFn == nil {
		s.syncFn = rawio.Fsync
	}
	s.room.L = &s.mu
	if err := s.recover(); err != nil {
		lf.Close()
		return nil, err
	}
	s.wg.Add(1)
	go s.commit()
	return s, nil
}

// fileGen parses "wal-<hex>" / "snap-<hex>".
func fileGen(name, prefix string) (uint64, bool) {
	rest, ok := strings.CutPrefix(name, prefix)
	if !ok || len(rest) != 16 {
		return 0, false
	}
	g, err := strconv.ParseUint(rest, 16, 64)
	return g, err == nil
}

func (s *Store) path(prefix string, gen uint64) string {
	return filepath.Join(s.dir, fmt.Sprintf("%s%016x", prefix, gen))
}

// recover loads the newest snapshot and the logs after it, cuts a torn log
// tail, removes files no longer needed and opens the log for appending.
func (s *Store) recover() error {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	var snaps, wals []uint64
	for _, e := range ents {
		name := e.Name()
		if strings.HasSuffix(name, ".tmp") {
			// A snapshot that was being written when the process died.
			os.Remove(filepath.Join(s.dir, name))
			continue
		}
		if g, ok := fileGen(name, "snap-"); ok {
			snaps = append(snaps, g)
		} else if g, ok := fileGen(name, "wal-"); ok {
			wals = append(wals, g)
		}
	}
	slices.Sort(snaps)
	slices.Sort(wals)
	var base uint64 // generation of the snapshot in use; 0: none
	if len(snaps) > 0 {
		base = snaps[len(snaps)-1]
		if err := s.replaySnapshot(s.path("snap-", base)); err != nil {
			return err
		}
	}
	var logBytes int64
	var current []uint64
	for _, g := range wals {
		if g >= base {
			current = append(current, g)
		}
	}
	for i, g := range current {
		p := s.path("wal-", g)
		valid, size, err := s.replayLog(p)
		if err != nil {
			return err
		}
		switch {
		case valid == size:
		case i == len(current)-1:
			s.log.Warn("store: cutting off a torn or corrupt log tail (records after it were never acknowledged)",
				"file", p, "valid_bytes", valid, "size", size)
			if err := os.Truncate(p, valid); err != nil {
				return fmt.Errorf("store: %w", err)
			}
		default:
			// An older log was fully fsynced before the next one was
			// started: damage there is not a crash artefact.
			s.log.Error("store: corrupt record inside an older log; the rest of that file is skipped",
				"file", p, "valid_bytes", valid, "size", size)
		}
		logBytes += valid
	}
	// Files older than the snapshot in use are covered by it.
	for _, g := range snaps {
		if g < base {
			os.Remove(s.path("snap-", g))
		}
	}
	for _, g := range wals {
		if g < base {
			os.Remove(s.path("wal-", g))
		}
	}
	s.gen = max(base, 1)
	if len(current) > 0 {
		s.gen = current[len(current)-1]
	}
	f, err := os.OpenFile(s.path("wal-", s.gen), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	// The log's directory entry (new file) and a truncation must be on
	// disk before anything is acknowledged from this log.
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("store: %w", err)
	}
	if err := syncDir(s.dir); err != nil {
		f.Close()
		return err
	}
	s.wal = f
	s.logBytes.Store(logBytes)
	return nil
}

// reader reads records from one file, never trusting a length field beyond
// the bytes the file has.
type reader struct {
	r    *bufio.Reader
	left int64 // bytes not yet read
	off  int64 // offset of the next record
	buf  []byte
}

// next returns the next record. ok is false at the end of the valid
// records: a clean end of file when r.left == 0, otherwise a torn or
// corrupt record at r.off.
func (r *reader) next() (typ byte, key, val []byte, ok bool) {
	if r.left < hdrLen {
		return 0, nil, nil, false
	}
	var hdr [hdrLen]byte
	if _, err := io.ReadFull(r.r, hdr[:]); err != nil {
		return 0, nil, nil, false
	}
	n := int64(binary.LittleEndian.Uint32(hdr[0:4]))
	sum := binary.LittleEndian.Uint32(hdr[4:8])
	if n < 2 || n > r.left-hdrLen {
		return 0, nil, nil, false
	}
	if int64(cap(r.buf)) < n {
		r.buf = make([]byte, n)
	}
	b := r.buf[:n]
	if _, err := io.ReadFull(r.r, b); err != nil {
		return 0, nil, nil, false
	}
	if crc32.Checksum(b, castagnoli) != sum {
		return 0, nil, nil, false
	}
	kl, w := binary.Uvarint(b[1:])
	if w <= 0 || kl > uint64(len(b)-1-w) {
		return 0, nil, nil, false
	}
	r.left -= hdrLen + n
	r.off += hdrLen + n
	k := b[1+w : 1+w+int(kl)]
	return b[0], k, b[1+w+int(kl):], true
}

func openReader(path string) (*os.File, *reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("store: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("store: %w", err)
	}
	return f, &reader{r: bufio.NewReaderSize(f, 1<<20), left: st.Size()}, nil
}

// replaySnapshot loads a snapshot. A damaged snapshot is logged and what
// could be read is kept: the data are soft state (registrations are
// refreshed by the phones), so refusing to start would be worse.
func (s *Store) replaySnapshot(path string) error {
	f, r, err := openReader(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var n uint64
	for {
		typ, k, v, ok := r.next()
		if !ok {
			s.log.Error("store: snapshot is damaged; records after the damage are lost",
				"file", path, "valid_bytes", r.off, "records", n)
			return nil
		}
		switch typ {
		case recPut:
			s.set(k, v)
			n++
		case recEnd:
			if c, w := binary.Uvarint(v); w <= 0 || c != n {
				s.log.Error("store: snapshot record count mismatch", "file", path, "want", c, "got", n)
			}
			return nil
		default:
			s.log.Error("store: unexpected record in snapshot", "file", path, "offset", r.off, "type", typ)
			return nil
		}
	}
}

// replayLog applies the records of one log and returns the length of its
// valid prefix and the file size.
func (s *Store) replayLog(path string) (valid, size int64, err error) {
	f, r, err := openReader(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	size = r.left
	for {
		start := r.off
		typ, k, v, ok := r.next()
		if !ok {
			return r.off, size, nil
		}
		switch typ {
		case recPut:
			s.set(k, v)
		case recDel:
			s.del(k)
		default:
			return start, size, nil // not a log record: corrupt from here
		}
	}
}

// recSize is the size of a put record for key and val.
func recSize(klen, vlen int) int64 {
	return int64(hdrLen + 1 + uvarintLen(uint64(klen)) + klen + vlen)
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

// lookup returns the current value of key (mu held, or during recovery).
// The string(key) conversions inside map index expressions do not allocate.
func (s *Store) lookup(key []byte) (string, bool) {
	if v, ok := s.live[string(key)]; ok {
		return v, true
	}
	if s.frozen != nil {
		if _, deleted := s.dels[string(key)]; deleted {
			return "", false
		}
		v, ok := s.frozen[string(key)]
		return v, ok
	}
	return "", false
}

// set stores a copy of key and val (mu held, or during recovery). One
// allocation holds both: the map key is a string view of its first bytes.
// The old entry is deleted first because assigning to an existing key keeps
// the old key string, which would keep the old value's allocation alive.
func (s *Store) set(key, val []byte) {
	if old, ok := s.lookup(key); ok {
		s.liveBytes -= recSize(len(key), len(old))
	} else {
		s.keys++
	}
	s.liveBytes += recSize(len(key), len(val))
	buf := make([]byte, len(key)+len(val)) // one allocation, never modified again
	copy(buf, key)
	copy(buf[len(key):], val)
	kv := unsafe.String(unsafe.SliceData(buf), len(buf))
	k, v := kv[:len(key)], kv[len(key):]
	delete(s.live, k)
	s.live[k] = v
	if s.frozen != nil {
		delete(s.dels, k)
	}
}

// del removes key (mu held, or during recovery).
func (s *Store) del(key []byte) {
	old, ok := s.lookup(key)
	if !ok {
		return
	}
	s.keys--
	s.liveBytes -= recSize(len(key), len(old))
	delete(s.live, string(key))
	if s.frozen != nil {
		// The frozen map is being read by the snapshot writer: record
		// the deletion beside it instead.
		s.dels[string(key)] = struct{}{}
	}
}

// view returns the bytes of a string without copying; they must not be
// modified.
func view(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// appendRecord appends one record.
func appendRecord[K string | []byte](dst []byte, typ byte, key K, val []byte) []byte {
	body := 1 + uvarintLen(uint64(len(key))) + len(key) + len(val)
	dst = slices.Grow(dst, hdrLen+body)
	start := len(dst)
	dst = dst[:start+hdrLen]
	dst = append(dst, typ)
	dst = binary.AppendUvarint(dst, uint64(len(key)))
	dst = append(dst, key...)
	dst = append(dst, val...)
	binary.LittleEndian.PutUint32(dst[start:], uint32(body))
	binary.LittleEndian.PutUint32(dst[start+4:], crc32.Checksum(dst[start+hdrLen:], castagnoli))
	return dst
}

// Done is told when a record is durable (err nil) or could not be written.
// It is an interface, not a func, so a caller can pass an object it
// already has and queue a record without allocating a closure.
type Done interface{ Stored(err error) }

// DoneFunc adapts a function to Done.
type DoneFunc func(err error)

// Stored calls f(err).
func (f DoneFunc) Stored(err error) { f(err) }

// Put stores key → val; both are copied. done, if not nil, runs on the
// committer goroutine (or in Leave, see Enter) once the record is durable
// (nil) or could not be written (error); it must not block for long, since
// it holds up the callbacks of the records after it. Put returns at once: it only waits
// when 64 MiB are queued for a disk that cannot keep up.
//
// After a failed write or fsync the store refuses every later write with
// that error (done is called at once): the file's state is then unknown,
// and only reopening, which replays what is really on disk, is safe.
func (s *Store) Put(key, val []byte, done Done) {
	s.enqueue(recPut, key, val, done)
}

// Delete removes key; done as for Put.
func (s *Store) Delete(key []byte, done Done) {
	s.enqueue(recDel, key, nil, done)
}

func (s *Store) enqueue(typ byte, key, val []byte, done Done) {
	s.mu.Lock()
	for len(s.pending) >= maxPending && !s.closed && s.err == nil {
		s.wake()
		s.room.Wait()
	}
	if err := s.failure(); err != nil {
		s.mu.Unlock()
		if done != nil {
			done.Stored(err)
		}
		return
	}
	if s.dump == nil {
		if typ == recPut {
			s.set(key, val)
		} else {
			s.del(key)
		}
	}
	// The map is updated now and the record written later, both in queue
	// order under mu, so the map always equals the log plus the queue:
	// which is what a snapshot must capture at a generation switch.
	s.pending = appendRecord(s.pending, typ, key, val)
	s.npending++
	if done != nil {
		s.dones = append(s.dones, done)
	}
	if !s.opt.NoSync || s.scopes.Load() == 0 {
		s.wake()
	} // else an open stretch's Leave writes it (Enter)
	s.mu.Unlock()
}

func (s *Store) failure() error {
	if s.closed {
		return ErrClosed
	}
	return s.err
}

// wake signals the committer (mu held).
func (s *Store) wake() {
	if !s.kicked {
		s.kicked = true
		s.kick <- struct{}{}
	}
}

// Sync waits until everything queued before it is durable.
func (s *Store) Sync() error {
	ch := make(chan error, 1)
	s.mu.Lock()
	if err := s.failure(); err != nil {
		s.mu.Unlock()
		return err
	}
	// A callback without a record: it runs after the batch it joins,
	// hence after every record queued before it is fsynced.
	s.dones = append(s.dones, DoneFunc(func(err error) { ch <- err }))
	s.wake()
	s.mu.Unlock()
	return <-ch
}

// Own hands the live set to its owner: from now on a snapshot asks dump to
// emit every live record (key, val; emit copies them) instead of keeping a
// copy of each record in the store. Call it once, after Load. dump runs on
// the snapshot goroutine while Puts go on; it may see changes queued after
// the snapshot began, which is harmless: the log written after that point
// is replayed over the snapshot and every record is a whole value.
// Stats.Keys is then counted at each snapshot only.
func (s *Store) Own(dump func(emit func(key, val []byte) error) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dump = dump
	if !s.snapping {
		s.live, s.frozen, s.dels = nil, nil, nil
	}
}

// Load calls fn for every live record. It is meant for the owner to
// rebuild its state after Open. key and val are only valid during the call
// and must not be modified; fn must not call the store.
func (s *Store) Load(fn func(key, val []byte) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range s.live {
		if err := fn(view(k), view(v)); err != nil {
			return err
		}
	}
	for k, v := range s.frozen {
		if _, shadowed := s.live[k]; shadowed {
			continue
		}
		if _, deleted := s.dels[k]; deleted {
			continue
		}
		if err := fn(view(k), view(v)); err != nil {
			return err
		}
	}
	return nil
}

// BatchHooks bracket the callbacks of each group commit on the committer
// goroutine: Begin before the first Stored, End after the last. The
// transaction layer uses them to send a whole batch's responses in one
// sendmmsg(2) from the committer itself, without waking a goroutine for
// it (txn.Layer.BeginQueued). Neither may block.
type BatchHooks struct {
	Begin, End func()
}

// SetBatchHooks sets the hooks of every later batch.
func (s *Store) SetBatchHooks(h BatchHooks) { s.hooks.Store(&h) }

// commit is the committer goroutine: it takes everything queued, writes it
// with one write, fsyncs once, and runs the callbacks. With NoSync, a
// reader inside Enter/Leave usually does that itself (Leave) and the
// committer only serves writes made outside any such scope.
func (s *Store) commit() {
	defer s.wg.Done()
	for {
		<-s.kick
		if d := s.opt.SyncInterval; d > 0 && !s.opt.NoSync {
			// Let concurrent requests join this batch's fsync (without
			// fsync there is nothing to share: a write is cheap).
			time.Sleep(d)
		}
		s.mu.Lock()
		s.kicked = false
		if !s.committing {
			s.drain()
		}
		// A Leave draining now wakes the committer again when it is
		// done, if the store is closing: nothing is left behind.
		done := s.closed && !s.committing
		s.mu.Unlock()
		if done {
			return
		}
	}
}

// Enter and Leave bracket a stretch of work on one goroutine (a transport
// reader's batch of datagrams) that may queue records: with NoSync, a
// record queued while any such stretch is open does not wake the
// committer, and Leave writes what is queued and runs its callbacks on the
// calling goroutine. At ordinary rates this saves, for every REGISTER, the
// hand-off to the committer goroutine and the second thread it wakes
// (docs/PERFORMANCE.md). Without NoSync both do nothing: an fsync on a
// reader goroutine would hold up every message behind it.
//
// Leave must be called without locks held that a callback might take
// (the callbacks send the REGISTERs' 200s).
func (s *Store) Enter() {
	if s.opt.NoSync {
		s.scopes.Add(1)
	}
}

// Leave ends what Enter began; see Enter.
func (s *Store) Leave() {
	if !s.opt.NoSync {
		return
	}
	// Leave the stretch first, then look: a record queued after the look
	// sees no open stretch (or another one, whose Leave comes later) and
	// wakes the committer.
	s.scopes.Add(-1)
	s.mu.Lock()
	if !s.committing && (s.npending > 0 || len(s.dones) > 0) {
		s.drain()
		if s.closed {
			s.wake() // the committer returns once nothing is left
		}
	}
	s.mu.Unlock()
}

// drain writes what is queued, batch after batch, until nothing is; one
// goroutine at a time (s.committing). s.mu is held on entry and on return,
// released while writing and running callbacks.
func (s *Store) drain() {
	s.committing = true
	for s.npending > 0 || len(s.dones) > 0 {
		buf, dones, n := s.pending, s.dones, s.npending
		s.pending, s.dones, s.npending = s.spare[:0], s.spareDones[:0], 0
		s.spare, s.spareDones = nil, nil
		var frozen map[string]string
		snap := false
		logBytes := s.logBytes.Load() + int64(len(buf))
		if !s.closed && s.err == nil && !s.snapping && logBytes >= s.opt.CompactAt &&
			logBytes >= s.liveBytes && logBytes >= s.nextTry {
			snap, s.snapping = true, true
			if s.dump == nil {
				// Freeze now: the map then holds exactly the records
				// in the logs so far plus buf, which goes to the old log.
				frozen = s.live
				s.frozen = frozen
				s.live = make(map[string]string)
				s.dels = make(map[string]struct{})
			}
		}
		s.room.Broadcast()
		s.mu.Unlock()

		err := s.write(buf, n)
		if snap {
			s.startSnapshot(frozen, err)
		}
		hooks := s.hooks.Load()
		if hooks != nil && hooks.Begin != nil {
			hooks.Begin()
		}
		for _, d := range dones {
			d.Stored(err)
		}
		if hooks != nil && hooks.End != nil {
			hooks.End()
		}
		clear(dones)
		if cap(buf) > 4<<20 {
			buf = nil // do not keep a burst's buffer forever
		}
		s.mu.Lock()
		s.spare, s.spareDones = buf, dones[:0]
	}
	s.committing = false
}

// write appends one batch to the log and fsyncs it.
func (s *Store) write(buf []byte, n int) error {
	s.mu.Lock()
	err := s.err
	s.mu.Unlock()
	if err != nil || len(buf) == 0 {
		return err
	}
	err = rawio.WriteAll(s.wal, buf)
	if err == nil && !s.opt.NoSync {
		t := time.Now()
		err = s.syncFn(s.wal)
		s.lastFsync.Store(int64(time.Since(t)))
		s.fsyncs.Add(1)
	}
	s.batches.Add(1)
	s.records.Add(uint64(n))
	s.bytes.Add(uint64(len(buf)))
	s.logBytes.Add(int64(len(buf)))
	if err != nil {
		// After a failed write or fsync the state of the file is
		// unknown (the kernel may have dropped the dirty pages), so
		// nothing more is acknowledged until the store is reopened.
		err = fmt.Errorf("store: %w", err)
		s.log.Error("store: log write failed; the store refuses further writes", "err", err)
		s.mu.Lock()
		s.err = err
		s.room.Broadcast()
		s.mu.Unlock()
	}
	return err
}

// startSnapshot switches to a new log generation and writes frozen to a
// snapshot in the background (committer only).
func (s *Store) startSnapshot(frozen map[string]string, werr error) {
	if werr != nil {
		s.endSnapshot(frozen, false)
		return
	}
	gen := s.gen + 1
	f, err := os.OpenFile(s.path("wal-", gen), os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_TRUNC, 0o640)
	if err == nil {
		// The new log must be in the directory before records
		// acknowledged from it can be trusted to survive a crash.
		if err = syncDir(s.dir); err != nil {
			f.Close()
		}
	}
	if err != nil {
		s.log.Error("store: cannot start a new log generation; compaction postponed", "err", err)
		s.endSnapshot(frozen, false)
		return
	}
	old := s.wal
	s.wal, s.gen = f, gen
	old.Close()
	covered := s.logBytes.Load() // bytes in the logs the snapshot replaces
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if s.opt.beforeSnapshot != nil {
			s.opt.beforeSnapshot()
		}
		t := time.Now()
		err := s.writeSnapshot(frozen, gen)
		if err != nil {
			s.log.Error("store: snapshot failed; the logs are kept", "err", err)
		} else {
			s.logBytes.Add(-covered)
			s.compactions.Add(1)
			s.lastCompaction.Store(int64(time.Since(t)))
			s.log.Debug("store: snapshot written", "generation", gen, "duration", time.Since(t))
		}
		s.endSnapshot(frozen, err == nil)
	}()
}

// endSnapshot folds the overlay back into the frozen map and makes it the
// live map again. It holds mu for as many operations as the overlay has.
func (s *Store) endSnapshot(frozen map[string]string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.snapping = false
	if !ok {
		s.nextTry = s.logBytes.Load() + s.opt.CompactAt
	} else {
		s.nextTry = 0
	}
	if s.dump != nil {
		s.live, s.frozen, s.dels = nil, nil, nil
		return
	}
	for k := range s.dels {
		delete(frozen, k)
	}
	for k, v := range s.live {
		delete(frozen, k) // so the new key (sharing v's allocation) is kept
		frozen[k] = v
	}
	s.live, s.frozen, s.dels = frozen, nil, nil
}

// writeSnapshot writes m as snap-<gen>: temp file, fsync, atomic rename,
// directory fsync; then removes the files it replaces.
func (s *Store) writeSnapshot(m map[string]string, gen uint64) error {
	final := s.path("snap-", gen)
	tmp := final + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	var rec []byte
	var n uint64
	var size int64
	emit := func(k, v []byte) error {
		rec = appendRecord(rec[:0], recPut, k, v)
		_, err := w.Write(rec) // an error also sticks to w: Flush returns it
		n++
		size += int64(len(rec))
		return err
	}
	if m != nil {
		for k, v := range m {
			emit(view(k), view(v))
		}
	} else {
		err = s.dump(emit)
	}
	rec = appendRecord(rec[:0], recEnd, "", binary.AppendUvarint(nil, n))
	w.Write(rec)
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	if err == nil && !s.opt.NoSync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, final)
	}
	if err == nil {
		err = syncDir(s.dir)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if m == nil {
		// Owner mode: the snapshot is the only measure of the live set.
		s.mu.Lock()
		s.liveBytes, s.keys = size, int(n)
		s.mu.Unlock()
	}
	ents, _ := os.ReadDir(s.dir)
	for _, e := range ents {
		if g, ok := fileGen(e.Name(), "wal-"); ok && g < gen {
			os.Remove(filepath.Join(s.dir, e.Name()))
		} else if g, ok := fileGen(e.Name(), "snap-"); ok && g < gen {
			os.Remove(filepath.Join(s.dir, e.Name()))
		}
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	err = d.Sync()
	d.Close()
	if err != nil {
		return fmt.Errorf("store: sync %s: %w", dir, err)
	}
	return nil
}

// Close writes and fsyncs what is queued, waits for a running snapshot,
// and releases the directory. It returns the store's write error, if any.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.room.Broadcast()
	s.wake()
	s.mu.Unlock()
	s.wg.Wait()
	err := s.wal.Close()
	s.lockFile.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	return err
}

// Stats returns the counters.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	keys := s.keys
	s.mu.Unlock()
	return Stats{
		Records:        s.records.Load(),
		Batches:        s.batches.Load(),
		Fsyncs:         s.fsyncs.Load(),
		Bytes:          s.bytes.Load(),
		LogBytes:       s.logBytes.Load(),
		Keys:           keys,
		Compactions:    s.compactions.Load(),
		LastFsync:      time.Duration(s.lastFsync.Load()),
		LastCompaction: time.Duration(s.lastCompaction.Load()),
	}
}
