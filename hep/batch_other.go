//go:build !linux

package hep

import "net"

type batchWriter struct{ conn net.Conn }

func newBatchWriter(c net.Conn) *batchWriter { return &batchWriter{conn: c} }

func (w *batchWriter) write(b *batch) (int, error) { return writeEach(w.conn, b) }

func (w *batchWriter) close() { w.conn.Close() }
