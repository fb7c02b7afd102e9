package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"kassa-agent/agent/internal/config"
)

// localClient is how the technician's commands (outbox, diag) reach a running
// agent: the store is locked while it runs, so they ask it over the local API.
type localClient struct {
	base  string // http://<dial address>
	host  string // Host header the API accepts (127.0.0.1:<port>)
	token string
	hc    *http.Client
}

// newLocalClient reads the API token and works out where to call. The API
// admits only a loopback Host header, so the Host is always 127.0.0.1:<port>,
// whatever address api.listen binds.
func newLocalClient(cfg config.Config) (*localClient, error) {
	host, port, err := net.SplitHostPort(cfg.API.Listen)
	if err != nil {
		return nil, fmt.Errorf("api.listen %q: %w", cfg.API.Listen, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	tok, err := os.ReadFile(cfg.API.TokenFile)
	if err != nil {
		return nil, fmt.Errorf("cannot read the API token %s (run this as root or as the agent's user): %w", cfg.API.TokenFile, err)
	}
	return &localClient{
		base:  "http://" + net.JoinHostPort(host, port),
		host:  net.JoinHostPort("127.0.0.1", port),
		token: strings.TrimSpace(string(tok)),
		hc:    &http.Client{Timeout: 15 * time.Second},
	}, nil
}

// remoteError is an error answer of the local API.
type remoteError struct {
	Status  int
	Code    string
	Message string
}

func (e *remoteError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("the agent answered HTTP %d", e.Status)
	}
	return e.Message
}

// call sends a request without a body and decodes a 2xx answer into v.
func (c *localClient) call(ctx context.Context, method, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, nil)
	if err != nil {
		return err
	}
	req.Host = c.host
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("the agent's local API at %s does not answer: %w", c.base, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("reading the agent's answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var body struct {
			Error struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		_ = json.Unmarshal(raw, &body)
		return &remoteError{Status: resp.StatusCode, Code: body.Error.Code, Message: body.Error.Message}
	}
	if v == nil {
		return nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("the agent's answer to %s %s is not what this program expects: %w", method, path, err)
	}
	return nil
}

// remoteCode is the API error code of err, "" if err is not an API answer.
func remoteCode(err error) string {
	var re *remoteError
	if errors.As(err, &re) {
		return re.Code
	}
	return ""
}
