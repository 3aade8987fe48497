package agentapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// RequestedIPAnnotation on a pod asks the CNI for an exact IPv4 address
// (conformance cases with status.podIP). The address may lie outside the
// node's pod CIDR: the agents route it.
const RequestedIPAnnotation = "fastpath.dev/ip"

// IPAMRequest asks the node's agent for a pod address. The agent looks
// the pod up (for RequestedIPAnnotation); the container id makes the
// request idempotent (a retried ADD gets the same address).
type IPAMRequest struct {
	ContainerID string `json:"containerID"`
	Namespace   string `json:"namespace"`
	Name        string `json:"name"`
	// Netns is the sandbox's network namespace (CNI_NETNS), recorded
	// with the allocation: the sidecar baseline runs a proxy there.
	Netns string `json:"netns,omitempty"`
}

// IPAMResponse is an allocated address.
type IPAMResponse struct {
	// IP is the pod's address (IPv4).
	IP string `json:"ip"`
	// Gateway is the pod's default gateway (link-local, answered by the
	// host side of the veth).
	Gateway string `json:"gateway"`
	// CIDR is the node's pod CIDR.
	CIDR string `json:"cidr"`
}

// AllocateIP asks the agent (unix socket) for the address of a pod.
func (c *Client) AllocateIP(ctx context.Context, req IPAMRequest) (*IPAMResponse, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	out, err := c.do(ctx, http.MethodPost, "/v1/ipam/allocate", body)
	if err != nil {
		return nil, err
	}
	var r IPAMResponse
	if err := json.Unmarshal(out, &r); err != nil {
		return nil, fmt.Errorf("agent at %s: decode allocation: %w", c.Socket, err)
	}
	return &r, nil
}

// ReleaseIP returns the address of a container to the pool; releasing an
// unknown container is not an error (CNI DEL is idempotent).
func (c *Client) ReleaseIP(ctx context.Context, containerID string) error {
	_, err := c.do(ctx, http.MethodPost, "/v1/ipam/release?containerID="+url.QueryEscape(containerID), nil)
	return err
}

// do sends a request with an optional JSON body and returns the body of a
// 200 answer.
func (c *Client) do(ctx context.Context, method, path string, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://agent"+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("agent at %s: %w", c.Socket, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return out, fmt.Errorf("agent at %s: %s %s: %s: %s", c.Socket, method, path, resp.Status, bytes.TrimSpace(out))
	}
	return out, nil
}
