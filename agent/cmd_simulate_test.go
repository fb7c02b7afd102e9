package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kassa-agent/fiscal/shtrih"
)

// startSimulator runs `kassa-agent simulate ARGS` as a child with the collector
// off (so a socket the simulator forgets is not closed by a finalizer) and waits
// for the line matching re; it returns re's first group.
func startSimulator(t *testing.T, re *regexp.Regexp, args ...string) string {
	t.Helper()
	c := &child{cmd: exec.Command(agentBin, append([]string{"simulate"}, args...)...), stderr: new(syncBuffer), done: make(chan error, 1)}
	c.cmd.Env = append(os.Environ(), "GOGC=off")
	c.cmd.Stdout, c.cmd.Stderr = c.stderr, c.stderr
	require.NoError(t, c.cmd.Start())
	go func() { c.done <- c.cmd.Wait() }()
	t.Cleanup(func() { _ = c.cmd.Process.Kill(); <-c.done })
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(c.stderr.String()); m != nil {
			return m[1]
		}
		select {
		case err := <-c.done:
			c.done <- err
			t.Fatalf("simulator exited (%v): %s", err, c.stderr)
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("simulator never said it was ready: %s", c.stderr)
	return ""
}

// rawHost is host software other than our driver: raw frames, literal codes.
type rawHost struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func rawDial(t *testing.T, addr string) *rawHost {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return &rawHost{t: t, c: c, r: bufio.NewReader(c)}
}

func (h *rawHost) send(b []byte) {
	h.t.Helper()
	_, err := h.c.Write(b)
	require.NoError(h.t, err)
}

func (h *rawHost) read(n int) []byte {
	h.t.Helper()
	b := make([]byte, n)
	_ = h.c.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, err := io.ReadFull(h.r, b)
	require.NoError(h.t, err, "read %d bytes", n)
	return b
}

// reply reads one reply frame and returns its error byte and data.
func (h *rawHost) reply(cmd uint16) (byte, []byte) {
	h.t.Helper()
	head := h.read(2)
	require.Equal(h.t, byte(shtrih.STX), head[0], "reply to %X", cmd)
	rest := h.read(int(head[1]) + 1)
	body := rest[:head[1]]
	require.Equal(h.t, shtrih.LRC(body), rest[head[1]], "LRC of the reply to %X", cmd)
	got, code, data, err := shtrih.SplitReply(body)
	require.NoError(h.t, err)
	require.Equal(h.t, cmd, got)
	return code, data
}

func params(p ...[]byte) []byte {
	out := shtrih.Password(30)
	for _, x := range p {
		out = append(out, x...)
	}
	return out
}

// once does what a network POS driver does for every command: a new connection,
// ENQ (the device must say idle), the frame, ACK, the reply, ACK, close.
func once(t *testing.T, addr string, cmd uint16, p ...[]byte) (byte, []byte) {
	t.Helper()
	h := rawDial(t, addr)
	defer h.c.Close()
	h.send([]byte{shtrih.ENQ})
	require.Equal(t, []byte{shtrih.NAK}, h.read(1), "ENQ on a fresh connection before %X", cmd)
	h.send(shtrih.Frame(shtrih.CommandBody(cmd, params(p...))))
	require.Equal(t, []byte{shtrih.ACK}, h.read(1), "ACK of %X", cmd)
	code, data := h.reply(cmd)
	h.send([]byte{shtrih.ACK})
	return code, data
}

func mustOnce(t *testing.T, addr string, cmd uint16, p ...[]byte) []byte {
	t.Helper()
	code, data := once(t, addr, cmd, p...)
	require.Zerof(t, code, "command %X answered error %02X", cmd, code)
	return data
}

func tlv(tag int, v string) []byte {
	b := binary.LittleEndian.AppendUint16(nil, uint16(tag))
	b = binary.LittleEndian.AppendUint16(b, uint16(len(v)))
	return append(b, v...)
}

func text40(s string) []byte {
	b := make([]byte, 40)
	copy(b, shtrih.Win1251(s))
	return b
}

// closeWaitOn counts sockets on port in CLOSE-WAIT (state 08).
func closeWaitOn(t *testing.T, port string) int {
	b, err := os.ReadFile("/proc/net/tcp")
	require.NoError(t, err)
	p, err := strconv.Atoi(port)
	require.NoError(t, err)
	suffix := ":" + strings.ToUpper(strconv.FormatInt(int64(p)|0x10000, 16)[1:])
	n := 0
	for _, line := range strings.Split(string(b), "\n")[1:] {
		if f := strings.Fields(line); len(f) > 3 && strings.HasSuffix(f[1], suffix) && f[3] == "08" {
			n++
		}
	}
	return n
}

// TestSimulateRegister drives `kassa-agent simulate register --tcp` with raw
// frames as other POS software does.
func TestSimulateRegister(t *testing.T) {
	state := filepath.Join(t.TempDir(), "fn.json")
	addr := startSimulator(t, regexp.MustCompile(`simulator on tcp (\S+) `), "register", "--tcp", "127.0.0.1:0", "--state", state, "--stray-ff=false")

	// INN in 11h: six bytes, least significant first (the vendor's Java driver).
	d := mustOnce(t, addr, shtrih.CmdStatus)
	require.GreaterOrEqual(t, len(d), 46)
	assert.Equal(t, []byte{0x87, 0x83, 0x07, 0xCB, 0x01, 0x00}, d[40:46], "INN 7701234567")

	// FFD 1.05 shift open: FF41h, FF0Ch cashier and cashier INN, E0h.
	mustOnce(t, addr, 0xFF41)
	mustOnce(t, addr, 0xFF0C, tlv(1021, "Ivanova"))
	mustOnce(t, addr, 0xFF0C, tlv(1203, "771234567890"))
	mustOnce(t, addr, 0xE0)

	// Read-only commands leave the state file alone.
	before, err := os.Stat(state)
	require.NoError(t, err)
	time.Sleep(10 * time.Millisecond)
	for _, cmd := range []uint16{0x10, 0x11, 0xFF01, 0xFF40} {
		mustOnce(t, addr, cmd)
	}
	after, err := os.Stat(state)
	require.NoError(t, err)
	assert.True(t, os.SameFile(before, after) && after.ModTime().Equal(before.ModTime()), "status reads rewrote the state file")

	// Legacy sale: 80h (1.000 × 120.00, row 2) opens the receipt, 85h closes it
	// with 200.00 cash; the reply is operator + change.
	item := append(append(shtrih.Money5(1000), shtrih.Money5(12000)...), 1, 2, 0, 0, 0)
	d = mustOnce(t, addr, 0x80, item, text40("Хлеб"))
	assert.Equal(t, []byte{30}, d)
	closeP := append(append(shtrih.Money5(20000), make([]byte, 15)...), 0, 0, 0, 0, 0, 0)
	d = mustOnce(t, addr, 0x85, closeP, text40(""))
	require.Len(t, d, 6)
	assert.Equal(t, uint64(8000), shtrih.GetUint(d[1:6]), "change")

	// 82h return sale opens a return receipt; 88h cancels it.
	mustOnce(t, addr, 0x82, item, text40("Хлеб"))
	mustOnce(t, addr, 0x88)
	code, _ := once(t, addr, 0x88)
	assert.Equal(t, shtrih.ErrCodeWrongMode, code, "cancel with no receipt open")

	// FF46h with no receipt open opens one; FF45h closes it with FD and FP.
	op := shtrih.EncodeOperation(30, shtrih.Operation{Type: 1, Quantity: 2_000_000, Price: 5000, Sum: -1, Tax: -1,
		TaxRate: 4, Department: 1, Method: 4, Object: 1, Name: "Молоко"})
	mustOnce(t, addr, 0xFF46, op[4:])
	var cl shtrih.Close
	cl.Payments[1] = 10000
	enc := shtrih.EncodeClose(30, cl)
	res, err := shtrih.DecodeCloseResult(mustOnce(t, addr, 0xFF45, enc[4:]))
	require.NoError(t, err)
	fn := mustOnce(t, addr, 0xFF01)
	assert.Equal(t, res.FD, binary.LittleEndian.Uint32(fn[len(fn)-4:]), "FF45h's FD is the FN's last")

	// Stray bytes before STX are skipped; the answer to a command comes in one
	// piece (one write: ACK and frame together), even with a fresh read.
	h := rawDial(t, addr)
	h.send([]byte{0xFF, 0x00, 0x7E})
	h.send(shtrih.Frame(shtrih.CommandBody(0x10, params())))
	buf := make([]byte, 64)
	_ = h.c.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, err := h.c.Read(buf)
	require.NoError(t, err)
	assert.Equal(t, 1+19, n, "first read of the answer: % X", buf[:n])

	// That reply is not ACKed: it is this connection's, not the next one's.
	mustOnce(t, addr, 0x10)
	h.send([]byte{shtrih.ENQ})
	_ = h.c.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, err = h.c.Read(buf)
	require.NoError(t, err)
	assert.Equal(t, append([]byte{shtrih.ACK}, buf[1:20]...), buf[:n], "ENQ gets the held reply")
	_ = h.c.Close()

	// FFD 1.05 shift close: FF42h, then 41h (Z report).
	mustOnce(t, addr, 0xFF42)
	mustOnce(t, addr, 0xFF0C, tlv(1203, "771234567890"))
	mustOnce(t, addr, 0x41)
	sp := mustOnce(t, addr, 0xFF40)
	assert.Equal(t, byte(0), sp[0], "shift still open after FF42h + 41h")

	// Every connection above was closed by the host; none lingers in CLOSE-WAIT.
	if runtime.GOOS == "linux" {
		_, port, _ := net.SplitHostPort(addr)
		deadline := time.Now().Add(2 * time.Second)
		for closeWaitOn(t, port) > 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		assert.Zero(t, closeWaitOn(t, port), "simulator sockets in CLOSE-WAIT")
	}
}

func TestSimulateSmartPay(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	url := startSimulator(t, regexp.MustCompile(`sandbox on (https://\S+) `), "smartpay", "--listen", "127.0.0.1:0", "--dir", dir)
	ca, err := os.ReadFile(filepath.Join(dir, "smartpay-sandbox-ca.pem"))
	require.NoError(t, err)
	st, err := os.Stat(filepath.Join(dir, "smartpay-client-key.pem"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "smartpay-client.pem"), filepath.Join(dir, "smartpay-client-key.pem"))
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(ca))
	conn, err := tls.Dial("tcp", strings.TrimPrefix(url, "https://"), &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, ServerName: "127.0.0.1"})
	require.NoError(t, err, "TLS to the sandbox with the files it wrote")
	require.NoError(t, conn.Close())
}

func TestSimulateUsage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"simulate"}, 2, "register"},
		{[]string{"simulate", "help"}, 0, "smartpay"},
		{[]string{"simulate", "frobnicate"}, 2, `unknown simulator "frobnicate"`},
		{[]string{"simulate", "register"}, 2, "exactly one of --tcp ADDR and --pty LINK"},
		{[]string{"simulate", "register", "--tcp", "127.0.0.1:0", "--pty", "x"}, 2, "exactly one of"},
		{[]string{"simulate", "smartpay", "--listen", "192.0.2.1:1"}, 1, "not loopback"},
	} {
		out, err := exec.CommandContext(ctx, agentBin, tc.args...).CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else {
			require.NoError(t, err)
		}
		assert.Equal(t, tc.code, code, "%v: %s", tc.args, out)
		assert.Contains(t, string(out), tc.out, "%v", tc.args)
	}
}

// TestSimulateRegisterPTY: --pty makes LINK a serial line to the simulator.
func TestSimulateRegisterPTY(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("pseudo-terminals: Linux")
	}
	link := filepath.Join(t.TempDir(), "register.tty")
	startSimulator(t, regexp.MustCompile(`simulator on (\S+) -> `), "register", "--pty", link)
	f, err := os.OpenFile(link, os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	_, err = f.Write(append([]byte{shtrih.ENQ}, shtrih.Frame(shtrih.CommandBody(0x10, params()))...))
	require.NoError(t, err)
	got := make([]byte, 2+19)
	require.NoError(t, f.SetReadDeadline(time.Now().Add(3*time.Second)))
	_, err = io.ReadFull(f, got)
	require.NoError(t, err)
	assert.Equal(t, []byte{shtrih.NAK, shtrih.ACK, shtrih.STX}, got[:3], "% X", got)
}
