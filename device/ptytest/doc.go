// Package ptytest gives tests a stand-in for a serial device: a Linux
// pseudo-terminal pair whose slave side is reached through a stable symlink
// (like /dev/serial/by-id/...), with unplug (the master goes away, the slave
// reports an I/O error) and re-plug (a fresh pair behind the same symlink).
//
// It is an ordinary package, not a _test file, because the device, fiscal and
// agent packages all drive their serial code through it, and the demo's
// simulated scanner and register use Create. On systems without
// Linux PTYs New skips the test with the reason.
package ptytest
