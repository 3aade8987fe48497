package ipam

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"

	"github.com/fastpath-bench/fastpath/datapath/agentapi"
)

// LookupFunc returns the address a pod asks for (its
// agentapi.RequestedIPAnnotation), or the zero Addr when it asks for none.
type LookupFunc func(ctx context.Context, namespace, name string) (requested netip.Addr, err error)

// Handler serves al on the agent's API:
//
//	POST /v1/ipam/allocate              body agentapi.IPAMRequest, answers agentapi.IPAMResponse
//	POST /v1/ipam/release?containerID=  answers {}
//
// lookup (nil: no pod asks for an address) gives the requested address of
// the pod; when it fails the answer is 503, so that the CNI plugin reports
// "try again later".
func Handler(al *Allocator, lookup LookupFunc) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/ipam/allocate", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "ipam: allocate: want POST", http.StatusMethodNotAllowed)
			return
		}
		var req agentapi.IPAMRequest
		dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
		if err := dec.Decode(&req); err != nil {
			http.Error(w, "ipam: allocate: decode request: "+err.Error(), http.StatusBadRequest)
			return
		}
		for _, f := range []struct{ name, value string }{
			{"containerID", req.ContainerID}, {"namespace", req.Namespace}, {"name", req.Name},
		} {
			if f.value == "" {
				http.Error(w, "ipam: allocate: missing field "+f.name, http.StatusBadRequest)
				return
			}
		}
		var requested netip.Addr
		if lookup != nil {
			var err error
			requested, err = lookup(r.Context(), req.Namespace, req.Name)
			if err != nil {
				http.Error(w, fmt.Sprintf("ipam: allocate: look up pod %s/%s: %v", req.Namespace, req.Name, err), http.StatusServiceUnavailable)
				return
			}
		}
		ip, err := al.AllocateIn(req.ContainerID, req.Namespace, req.Name, req.Netns, requested)
		if err != nil {
			http.Error(w, err.Error(), allocateStatus(err))
			return
		}
		writeJSON(w, agentapi.IPAMResponse{IP: ip.String(), Gateway: Gateway.String(), CIDR: al.CIDR().String()})
	})
	mux.HandleFunc("/v1/ipam/release", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "ipam: release: want POST", http.StatusMethodNotAllowed)
			return
		}
		id := r.URL.Query().Get("containerID")
		if id == "" {
			http.Error(w, "ipam: release: missing parameter containerID", http.StatusBadRequest)
			return
		}
		if err := al.Release(id); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, struct{}{})
	})
	return mux
}

// allocateStatus is the HTTP status for an Allocate error.
func allocateStatus(err error) int {
	switch {
	case errors.Is(err, ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, ErrInUse), errors.Is(err, ErrExhausted):
		return http.StatusConflict
	default:
		return http.StatusInternalServerError
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
