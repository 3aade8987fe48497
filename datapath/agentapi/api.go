// Package agentapi is the agent's debug and status API: the types it serves
// as JSON over a unix socket, and a small client. It imports nothing that
// touches the kernel, so the harness can use it without the datapath.
package agentapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// Status is what GET /v1/status returns.
type Status struct {
	Node     string `json:"node"`
	Datapath string `json:"datapath"`
	// AttachMode is how programs are attached: "tcx", "tc", or "" when
	// nothing is attached.
	AttachMode string    `json:"attachMode,omitempty"`
	PID        int       `json:"pid"`
	StartedAt  time.Time `json:"startedAt"`

	// Ready is true once a desired state has been programmed.
	Ready bool `json:"ready"`
	// Generation counts successful applies.
	Generation int64 `json:"generation"`
	// StateHash is the digest (model.HashDir) of the state programmed now.
	StateHash string `json:"stateHash,omitempty"`
	// AppliedAt is when StateHash was programmed, and ApplySeconds how
	// long loading, resolving and programming it took.
	AppliedAt    time.Time `json:"appliedAt,omitempty"`
	ApplySeconds float64   `json:"applySeconds"`
	// LastError is the error of the newest attempt, empty when it
	// succeeded; FailedHash is the digest of the state it refused. The
	// previous state stays programmed.
	LastError  string `json:"lastError,omitempty"`
	FailedHash string `json:"failedHash,omitempty"`

	Endpoints     int      `json:"endpoints"`
	Pending       []string `json:"pending,omitempty"`
	PolicyEntries int      `json:"policyEntries"`
	Identities    int      `json:"identities"`
	Policies      int      `json:"policies"`
}

// Client talks to one agent over its unix socket.
type Client struct {
	Socket string
	http   *http.Client
}

// NewClient returns a client for the agent listening on socket.
func NewClient(socket string) *Client {
	return &Client{
		Socket: socket,
		http: &http.Client{
			Timeout: 5 * time.Second,
			Transport: &http.Transport{
				DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
					var d net.Dialer
					return d.DialContext(ctx, "unix", socket)
				},
			},
		},
	}
}

// Status fetches the agent's status.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var st Status
	if err := c.getJSON(ctx, "/v1/status", &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// Get fetches path and returns the body.
func (c *Client) Get(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://agent"+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("agent at %s: %w", c.Socket, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return body, fmt.Errorf("agent at %s: GET %s: %s: %s", c.Socket, path, resp.Status, body)
	}
	return body, nil
}

func (c *Client) getJSON(ctx context.Context, path string, into any) error {
	body, err := c.Get(ctx, path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, into); err != nil {
		return fmt.Errorf("agent at %s: decode %s: %w", c.Socket, path, err)
	}
	return nil
}

// WaitFor polls the agent until cond holds for its status or ctx ends. It
// returns the last status seen.
func (c *Client) WaitFor(ctx context.Context, interval time.Duration, cond func(*Status) bool) (*Status, error) {
	var last *Status
	var lastErr error
	for {
		st, err := c.Status(ctx)
		if err == nil {
			last = st
			if cond(st) {
				return st, nil
			}
		} else {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			if last != nil && last.LastError != "" {
				return last, fmt.Errorf("agent %s: %w; its last error: %s", last.Node, ctx.Err(), last.LastError)
			}
			if last == nil && lastErr != nil {
				return nil, fmt.Errorf("%w (last: %v)", ctx.Err(), lastErr)
			}
			return last, ctx.Err()
		case <-time.After(interval):
		}
	}
}
