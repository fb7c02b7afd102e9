package queue

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime/debug"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// checkFile inspects an existing store file before it is opened for
// writing. It returns a non-empty reason when the file is damaged, and an
// error only when the file could not be inspected at all (locked by another
// process, no permission).
//
// bbolt reads pages straight from a memory map and trusts what it finds, so a
// truncated or garbled file can make it panic or fault. The check therefore
// runs on its own goroutine with faults turned into panics
// (debug.SetPanicOnFault) and recovers from them, and it compares the file
// size with the size the meta page claims before touching any data page.
// The file is opened read-only, so the check never writes to a damaged file.
func checkFile(path string, timeout time.Duration) (reason string, err error) {
	type result struct {
		reason string
		err    error
	}
	done := make(chan result, 1)
	go func() {
		var res result
		defer func() {
			if p := recover(); p != nil {
				res = result{reason: fmt.Sprintf("reading the file failed: %v", p)}
			}
			done <- res
		}()
		debug.SetPanicOnFault(true)
		res.reason, res.err = inspect(path, timeout)
	}()
	r := <-done
	return r.reason, r.err
}

func inspect(path string, timeout time.Duration) (string, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: timeout})
	if err != nil {
		switch {
		case errors.Is(err, berrors.ErrTimeout):
			return "", &lockedError{path: path}
		case errors.Is(err, fs.ErrPermission), errors.Is(err, fs.ErrNotExist):
			return "", fmt.Errorf("queue: open %s: %w", path, err)
		}
		return fmt.Sprintf("not a valid store: %v", err), nil
	}
	defer func() { _ = db.Close() }()

	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("queue: %w", err)
	}
	var reason string
	err = db.View(func(tx *bolt.Tx) error {
		if fi.Size() < tx.Size() {
			reason = fmt.Sprintf("truncated: file is %d bytes, its header says %d", fi.Size(), tx.Size())
			return nil
		}
		// Walk every bucket and key so every reachable page is read here,
		// under the recover above, before anything else relies on it.
		if err := tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			return walkBucket(b, 0)
		}); err != nil {
			reason = err.Error()
			return nil
		}
		for cerr := range tx.Check() {
			if reason == "" {
				reason = "consistency check: " + cerr.Error()
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Sprintf("reading the file failed: %v", err), nil
	}
	return reason, nil
}

func walkBucket(b *bolt.Bucket, depth int) error {
	if depth > 16 {
		return errors.New("buckets nested too deep")
	}
	c := b.Cursor()
	var prev []byte
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if prev != nil && bytes.Compare(prev, k) >= 0 {
			return fmt.Errorf("keys out of order in a bucket")
		}
		prev = k
		if v == nil {
			if child := b.Bucket(k); child != nil {
				if err := walkBucket(child, depth+1); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
