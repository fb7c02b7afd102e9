package queue

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const (
	envBacklogChild = "KASSA_QUEUE_BACKLOG_CHILD"
	envBacklogN     = "KASSA_QUEUE_BACKLOG_N"
	// envBacklogProfile names a file for a CPU profile of the child's
	// drain (go test -cpuprofile only profiles the parent).
	envBacklogProfile = "KASSA_QUEUE_BACKLOG_CPUPROFILE"
	backlogWorkers    = 32
)

type backlogReport struct {
	OpenMS       float64 `json:"open_ms"`
	ReadyMS      float64 `json:"ready_ms"`
	DrainPerSec  float64 `json:"drain_per_sec"`
	BarePerSec   float64 `json:"bare_per_sec"`
	PeakRSSMiB   float64 `json:"peak_rss_mib"`
	StartRSSMiB  float64 `json:"start_rss_mib"`
	FileMiB      float64 `json:"file_mib"`
	DrainCPUus   float64 `json:"drain_cpu_us"` // child CPU per message while draining
	HandlerBusy  float64 `json:"handler_busy"` // share of worker time spent in handlers
	DrainAllocs  float64 `json:"drain_allocs"` // heap allocations per message while draining
	BareAllocs   float64 `json:"bare_allocs"`  // and per POST with no store
	BareCPUus    float64 `json:"bare_cpu_us"`  // child CPU per POST with no store
	Delivered    int64   `json:"delivered"`
	PendingAfter int     `json:"pending_after"`
}

// BenchmarkBacklog100k fills a store with 100 000 pending messages (10 000
// keys x 10), then in a fresh child process measures: Open, time until the
// dispatcher has made its first pass (agent start), the drain rate to a
// loopback HTTP receiver next to the rate of the same POSTs made straight
// with the same concurrency and no store (what the receiver allows), and
// the child's peak RSS (VmHWM) over the whole run. KASSA_QUEUE_BACKLOG_N
// changes the size.
//
// Three receivers: one that answers at once, so the agent and the receiver
// compete for the same two cores and the figure is the agent's own CPU
// ceiling; and two that take 1 ms and 5 ms per request, as a provider on a
// local and a fast network would, where the receiver sets the pace.
func BenchmarkBacklog100k(b *testing.B) {
	b.Run("receiver=0ms", func(b *testing.B) { benchBacklog(b, 0) })
	b.Run("receiver=1ms", func(b *testing.B) { benchBacklog(b, time.Millisecond) })
	b.Run("receiver=5ms", func(b *testing.B) { benchBacklog(b, 5*time.Millisecond) })
}

func benchBacklog(b *testing.B, delay time.Duration) {
	n := 100_000
	if v := os.Getenv(envBacklogN); v != "" {
		n, _ = strconv.Atoi(v)
	}
	var got atomic.Int64
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if delay > 0 {
			time.Sleep(delay)
		}
		got.Add(1)
	}))
	defer recv.Close()
	for range b.N {
		b.StopTimer()
		path := filepath.Join(b.TempDir(), "kassa.db")
		fillBacklog(b, path, n)
		b.StartTimer()
		cmd := exec.Command(os.Args[0], "-test.run=^TestBacklogChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), envBacklogChild+"="+path, envCrashURL+"="+recv.URL, envBacklogN+"="+strconv.Itoa(n))
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			b.Fatalf("child: %v\n%s", err, stderr.String())
		}
		var rep backlogReport
		line := stdout.String()
		if i := strings.Index(line, "REPORT "); i >= 0 {
			line = line[i+len("REPORT "):]
			line = line[:strings.IndexByte(line, '\n')]
		}
		if err := json.Unmarshal([]byte(line), &rep); err != nil {
			b.Fatalf("child report %q: %v", stdout.String(), err)
		}
		if rep.Delivered != int64(n) || rep.PendingAfter != 0 {
			b.Fatalf("drained %d of %d, %d left", rep.Delivered, n, rep.PendingAfter)
		}
		b.ReportMetric(rep.OpenMS, "open-ms")
		b.ReportMetric(rep.ReadyMS, "start-ms")
		b.ReportMetric(rep.DrainPerSec, "drain-msgs/s")
		b.ReportMetric(rep.BarePerSec, "receiver-only-posts/s")
		b.ReportMetric(rep.DrainPerSec/rep.BarePerSec, "drain/receiver")
		b.ReportMetric(rep.PeakRSSMiB, "peak-rss-MiB")
		b.ReportMetric(rep.FileMiB, "file-MiB")
		b.ReportMetric(rep.DrainCPUus, "drain-cpu-µs/msg")
		b.ReportMetric(rep.HandlerBusy, "handler-busy")
		b.ReportMetric(rep.DrainAllocs, "drain-allocs/msg")
		b.ReportMetric(rep.BareAllocs, "receiver-only-allocs/post")
		b.ReportMetric(rep.BareCPUus, "receiver-only-cpu-µs/post")
	}
}

func procStatusMiB(field string) float64 {
	raw, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(l, field+":") {
			f := strings.Fields(l)
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// cpuTime is the CPU (user+system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestBacklogChild is the child side of BenchmarkBacklog100k.
func TestBacklogChild(t *testing.T) {
	path := os.Getenv(envBacklogChild)
	if path == "" {
		t.Skip("child process of BenchmarkBacklog100k")
	}
	n, _ := strconv.Atoi(os.Getenv(envBacklogN))
	url := os.Getenv(envCrashURL)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: backlogWorkers}}
	post := func(ctx context.Context, body []byte) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("receiver: %s", resp.Status)
		}
		return nil
	}
	fi, _ := os.Stat(path)
	rep := backlogReport{FileMiB: float64(fi.Size()) / (1 << 20)}

	t0 := time.Now()
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	rep.OpenMS = float64(time.Since(t0).Microseconds()) / 1000
	var delivered, inHandlers atomic.Int64
	doneCh := make(chan struct{})
	var doneOnce sync.Once
	d := NewDispatcher(s, DispatcherOptions{Workers: backlogWorkers, MaxAge: -1})
	d.Register("smartpay.confirm", func(ctx context.Context, m Message) error {
		t := time.Now()
		err := post(ctx, m.Payload)
		inHandlers.Add(int64(time.Since(t)))
		if err != nil {
			return err
		}
		if delivered.Add(1) == int64(n) {
			doneOnce.Do(func() { close(doneCh) })
		}
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- d.Run(ctx) }()
	<-d.Ready()
	rep.ReadyMS = float64(time.Since(t0).Microseconds()) / 1000
	rep.StartRSSMiB = procStatusMiB("VmRSS")
	if pf := os.Getenv(envBacklogProfile); pf != "" {
		f, err := os.Create(pf)
		if err != nil {
			t.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	var ms0 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	t1, c1 := time.Now(), cpuTime()
	<-doneCh
	// Wait for the last mark-done commits.
	for {
		st, err := s.OutboxStats()
		if err != nil {
			t.Fatal(err)
		}
		if st.Pending == 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	rep.DrainPerSec = float64(n) / time.Since(t1).Seconds()
	rep.HandlerBusy = float64(inHandlers.Load()) / float64(backlogWorkers*time.Since(t1))
	rep.DrainCPUus = float64((cpuTime() - c1).Microseconds()) / float64(n)
	var ms1 runtime.MemStats
	runtime.ReadMemStats(&ms1)
	rep.DrainAllocs = float64(ms1.Mallocs-ms0.Mallocs) / float64(n)
	cancel()
	if err := <-runErr; err != nil {
		t.Fatal(err)
	}
	st, _ := s.OutboxStats()
	rep.PendingAfter = st.Pending + st.Parked
	rep.Delivered = delivered.Load()
	s.Close()
	rep.PeakRSSMiB = procStatusMiB("VmHWM")

	// The receiver alone: the same POSTs with the same concurrency, no store.
	bare := min(n, 20_000)
	var next atomic.Int64
	var wg sync.WaitGroup
	runtime.ReadMemStats(&ms0)
	t2, c2 := time.Now(), cpuTime()
	for range backlogWorkers {
		wg.Go(func() {
			for next.Add(1) <= int64(bare) {
				if err := post(context.Background(), benchPayload); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	rep.BarePerSec = float64(bare) / time.Since(t2).Seconds()
	rep.BareCPUus = float64((cpuTime() - c2).Microseconds()) / float64(bare)
	runtime.ReadMemStats(&ms1)
	rep.BareAllocs = float64(ms1.Mallocs-ms0.Mallocs) / float64(bare)

	out, _ := json.Marshal(rep)
	fmt.Printf("REPORT %s\n", out)
}
