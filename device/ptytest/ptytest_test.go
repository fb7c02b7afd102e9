package ptytest_test

import (
	"os"
	"testing"
	"time"

	"kassa-agent/device/ptytest"
)

func TestUnplugReplug(t *testing.T) {
	d := ptytest.New(t)
	first := d.SlavePath()
	if target, err := os.Readlink(d.Path()); err != nil || target != first {
		t.Fatalf("link -> %q (%v), want %q", target, err, first)
	}
	f, err := os.OpenFile(d.Path(), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// raw line: CR and NUL pass untouched, nothing is echoed back
	if _, err := d.Write([]byte("a\r\x00")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 3)
	f.SetReadDeadline(time.Now().Add(time.Second))
	if n, err := f.Read(buf); err != nil || string(buf[:n]) != "a\r\x00" {
		t.Fatalf("slave read %q %v", buf[:n], err)
	}
	f.Write([]byte("ok"))
	got := make([]byte, 2)
	if err := d.ReadFull(got, time.Second); err != nil || string(got) != "ok" {
		t.Fatalf("master read %q %v", got, err)
	}

	d.Unplug()
	if _, err := os.Lstat(d.Path()); !os.IsNotExist(err) {
		t.Fatalf("link still there after unplug: %v", err)
	}
	if _, err := d.Write([]byte("x")); err == nil {
		t.Fatal("write while unplugged succeeded")
	}
	d.Replug()
	if d.SlavePath() == first {
		t.Fatalf("re-plugged under the same node %s", first)
	}
	if target, _ := os.Readlink(d.Path()); target != d.SlavePath() {
		t.Fatalf("link -> %q, want %q", target, d.SlavePath())
	}
}
