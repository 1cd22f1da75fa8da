// Package store is sipedge's embedded durable key-value log: every Put and
// Delete is appended to a write-ahead log and fsynced before its done
// callback runs, many records sharing one fsync (group commit), so a REGISTER
// is answered only once its binding is on disk without holding the caller
// on the disk. The live set is snapshotted when the log grows.
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
	"sync"
	"sync/atomic"
	"time"
)

// Options tune the store.
type Options struct {
	// CompactAt is the log size that triggers a snapshot (default 64 MiB);
	// a snapshot is only taken when the log is also twice the live data.
	CompactAt int64
	Logger    *slog.Logger
	// NoSync skips fsync (tests and benchmarks of the caller only).
	NoSync bool
}

// Stats counts store activity.
type Stats struct {
	Records, Batches, Fsyncs, Compactions uint64
	LastFsync                             time.Duration
	LogBytes                              int64
}

type op struct {
	del  bool
	key  string
	val  []byte
	done func(error)
	sync chan error // Sync() barrier
}

// Store is an open store.
type Store struct {
	dir  string
	opt  Options
	log  *slog.Logger
	mu   sync.Mutex // guards live
	live map[string][]byte

	ops       chan op
	wal       *os.File
	walLen    int64 // committer only
	walLenPub atomic.Int64
	quit      chan struct{}
	wg        sync.WaitGroup
	closed    atomic.Bool

	records, batches, fsyncs, compactions atomic.Uint64
	lastFsync                             atomic.Int64
}

const (
	recPut byte = 1
	recDel byte = 2
	// record: u32 length of the rest | u32 CRC-32C of the rest | type | u32 key length | key | value
	hdrLen = 8
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Open opens or creates the store in dir and replays it.
func Open(dir string, opt Options) (*Store, error) {
	if opt.CompactAt == 0 {
		opt.CompactAt = 64 << 20
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	s := &Store{dir: dir, opt: opt, log: opt.Logger, live: map[string][]byte{},
		ops: make(chan op, 4096), quit: make(chan struct{})}
	if _, err := s.replay(filepath.Join(dir, "snapshot")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	good, err := s.replay(filepath.Join(dir, "wal"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, "wal"), os.O_CREATE|os.O_RDWR, 0o640)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	// A torn tail (crash mid-write) is cut off: those records were never
	// acknowledged, since done runs only after fsync.
	if st, _ := f.Stat(); st != nil && st.Size() != good {
		s.log.Warn("store: cutting off an incomplete log tail", "file", f.Name(), "valid_bytes", good, "size", st.Size())
		if err := f.Truncate(good); err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
	}
	if _, err := f.Seek(good, io.SeekStart); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	s.wal, s.walLen = f, good
	s.wg.Add(1)
	go s.commit()
	return s, nil
}

// replay applies the records of a file and returns the length of its valid
// prefix.
func (s *Store) replay(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	var off int64
	var hdr [hdrLen]byte
	buf := make([]byte, 0, 4096)
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return off, nil
		}
		n := binary.LittleEndian.Uint32(hdr[0:4])
		sum := binary.LittleEndian.Uint32(hdr[4:8])
		if n < 5 || n > 64<<20 {
			return off, nil
		}
		if cap(buf) < int(n) {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(r, buf); err != nil {
			return off, nil
		}
		if crc32.Checksum(buf, crcTable) != sum {
			return off, nil
		}
		kl := binary.LittleEndian.Uint32(buf[1:5])
		if int(kl) > len(buf)-5 {
			return off, nil
		}
		key := string(buf[5 : 5+kl])
		switch buf[0] {
		case recPut:
			s.live[key] = append([]byte(nil), buf[5+kl:]...)
		case recDel:
			delete(s.live, key)
		default:
			return off, nil
		}
		off += hdrLen + int64(n)
	}
}

func appendRecord(dst []byte, typ byte, key string, val []byte) []byte {
	n := 1 + 4 + len(key) + len(val)
	start := len(dst)
	dst = append(dst, make([]byte, hdrLen)...)
	dst = append(dst, typ)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(key)))
	dst = append(dst, key...)
	dst = append(dst, val...)
	binary.LittleEndian.PutUint32(dst[start:], uint32(n))
	binary.LittleEndian.PutUint32(dst[start+4:], crc32.Checksum(dst[start+hdrLen:], crcTable))
	return dst
}

// ErrClosed is returned after Close.
var ErrClosed = errors.New("store: closed")

// Put stores key → val (both copied). done runs on the committer goroutine
// once the record is durable (or failed).
func (s *Store) Put(key string, val []byte, done func(error)) {
	s.enqueue(op{key: key, val: append([]byte(nil), val...), done: done})
}

// Delete removes key; done as for Put.
func (s *Store) Delete(key string, done func(error)) {
	s.enqueue(op{del: true, key: key, done: done})
}

func (s *Store) enqueue(o op) {
	if s.closed.Load() {
		if o.done != nil {
			o.done(ErrClosed)
		}
		return
	}
	select {
	case s.ops <- o:
	case <-s.quit:
		if o.done != nil {
			o.done(ErrClosed)
		}
	}
}

// Sync waits until everything queued before it is durable.
func (s *Store) Sync() error {
	ch := make(chan error, 1)
	s.enqueue(op{sync: ch, done: func(err error) { ch <- err }})
	return <-ch
}

// Load calls fn for every live record (after Open, before use).
func (s *Store) Load(fn func(key string, val []byte) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range s.live {
		if err := fn(k, v); err != nil {
			return err
		}
	}
	return nil
}

// Len returns the number of live keys.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.live)
}

// commit is the committer goroutine: it takes every queued operation,
// writes them in one write, fsyncs once, then runs their callbacks.
func (s *Store) commit() {
	defer s.wg.Done()
	var batch []op
	var buf []byte
	for {
		select {
		case o := <-s.ops:
			batch = append(batch[:0], o)
		case <-s.quit:
			// Drain what is queued, then stop.
			for {
				select {
				case o := <-s.ops:
					batch = append(batch, o)
				default:
					if len(batch) > 0 {
						s.flush(batch, buf)
					}
					return
				}
			}
		}
	more:
		for len(batch) < 8192 {
			select {
			case o := <-s.ops:
				batch = append(batch, o)
			default:
				break more
			}
		}
		buf = s.flush(batch, buf)
		for i := range batch {
			batch[i] = op{}
		}
		batch = batch[:0]
	}
}

func (s *Store) flush(batch []op, buf []byte) []byte {
	buf = buf[:0]
	s.mu.Lock()
	for _, o := range batch {
		if o.sync != nil {
			continue
		}
		if o.del {
			buf = appendRecord(buf, recDel, o.key, nil)
			delete(s.live, o.key)
		} else {
			buf = appendRecord(buf, recPut, o.key, o.val)
			s.live[o.key] = o.val
		}
	}
	s.mu.Unlock()
	var err error
	if len(buf) > 0 {
		_, err = s.wal.Write(buf)
		if err == nil && !s.opt.NoSync {
			t := time.Now()
			err = s.wal.Sync()
			s.lastFsync.Store(int64(time.Since(t)))
			s.fsyncs.Add(1)
		}
		s.walLen += int64(len(buf))
		s.walLenPub.Store(s.walLen)
	}
	if err != nil {
		s.log.Error("store: write failed", "err", err)
	}
	s.batches.Add(1)
	s.records.Add(uint64(len(batch)))
	for _, o := range batch {
		if o.done != nil {
			o.done(err)
		}
	}
	if err == nil && s.walLen > s.opt.CompactAt {
		if cerr := s.compact(); cerr != nil {
			s.log.Error("store: compaction failed", "err", cerr)
		}
	}
	return buf
}

// compact writes the live set to a new snapshot (temp file, fsync, atomic
// rename, directory fsync) and starts an empty log. It runs on the
// committer between batches, so nothing is written meanwhile; with the
// live set in memory it is one sequential write.
func (s *Store) compact() error {
	s.mu.Lock()
	var live int64
	for k, v := range s.live {
		live += int64(hdrLen + 5 + len(k) + len(v))
	}
	if s.walLen < 2*live {
		s.mu.Unlock()
		return nil
	}
	tmp := filepath.Join(s.dir, "snapshot.tmp")
	f, err := os.Create(tmp)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	var rec []byte
	for k, v := range s.live {
		rec = appendRecord(rec[:0], recPut, k, v)
		if _, err := w.Write(rec); err != nil {
			s.mu.Unlock()
			f.Close()
			return err
		}
	}
	s.mu.Unlock()
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	f.Close()
	if err := os.Rename(tmp, filepath.Join(s.dir, "snapshot")); err != nil {
		return err
	}
	if d, err := os.Open(s.dir); err == nil {
		d.Sync()
		d.Close()
	}
	// The snapshot now holds everything: the log starts again.
	if err := s.wal.Truncate(0); err != nil {
		return err
	}
	if _, err := s.wal.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if err := s.wal.Sync(); err != nil {
		return err
	}
	s.walLen = 0
	s.walLenPub.Store(0)
	s.compactions.Add(1)
	return nil
}

// Close flushes what is queued, fsyncs and stops.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	close(s.quit)
	s.wg.Wait()
	return s.wal.Close()
}

// Stats returns the counters.
func (s *Store) Stats() Stats {
	return Stats{Records: s.records.Load(), Batches: s.batches.Load(), Fsyncs: s.fsyncs.Load(),
		Compactions: s.compactions.Load(), LastFsync: time.Duration(s.lastFsync.Load()), LogBytes: s.walLenPub.Load()}
}
