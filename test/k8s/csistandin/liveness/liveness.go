package liveness

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
)

// DefaultProbeTimeout is livenessprobe's --probe-timeout default.
const DefaultProbeTimeout = 3 * time.Second

// Handler serves /healthz from the driver's Probe.
type Handler struct {
	client  csi.IdentityClient
	timeout time.Duration
	log     *slog.Logger
}

// NewHandler probes the driver over conn, each call bounded by timeout.
func NewHandler(conn *grpc.ClientConn, timeout time.Duration, log *slog.Logger) (*Handler, error) {
	if timeout <= 0 {
		return nil, fmt.Errorf("probe-timeout %v: must be positive", timeout)
	}
	if log == nil {
		log = slog.Default()
	}
	return &Handler{client: csi.NewIdentityClient(conn), timeout: timeout, log: log}, nil
}

// Routes returns the health port's routes: /healthz only, as upstream
// (without --http-endpoint, which adds metrics).
func (h *Handler) Routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/healthz", h)
	return mux
}

// ServeHTTP answers one probe.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), h.timeout)
	defer cancel()
	// Upstream connects and probes within the timeout; the connection
	// here is kept, so waiting for it to be ready is part of the call.
	resp, err := h.client.Probe(ctx, &csi.ProbeRequest{}, grpc.WaitForReady(true))
	switch {
	case err != nil:
		h.log.Error("health check failed", "err", err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
	case resp.GetReady() != nil && !resp.GetReady().GetValue():
		// rpc.Probe (csi-lib-utils v0.24.0): an absent ready field means
		// ready, as the CSI spec says.
		h.log.Error("driver responded but is not ready")
		http.Error(w, "driver responded but is not ready", http.StatusInternalServerError)
	default:
		_, _ = w.Write([]byte("ok"))
	}
}
