package httpapi

import (
	"bufio"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/httpapi/connguard"
	"github.com/efs-health-agent/efs-health-agent/httpapi/rendercache"
	"github.com/efs-health-agent/efs-health-agent/internal/lograte"
	"github.com/efs-health-agent/efs-health-agent/internal/pathesc"
)

// Route paths served by the agent.
const (
	PathHealthz = "/healthz"
	PathReady   = "/healthz/ready"
	PathLive    = "/healthz/live"
	PathMounts  = "/healthz/mounts"
	PathMetrics = "/metrics"
)

// probePaths are the O(1) routes the kubelet's probes use: the connection
// guard keeps them reachable when every connection slot is taken.
var probePaths = []string{PathHealthz, PathReady, PathLive}

// HealthyBody is the body of a successful /healthz, as documented.
const HealthyBody = "CSI Driver is healthy"

// Source is what the handlers read. *agent.Monitor implements it.
type Source interface {
	Summary() *agent.Summary
	Live() bool
	Statuses() []*agent.MountStatus
}

// Options configures the router.
type Options struct {
	// Metrics serves /metrics when set.
	Metrics http.Handler
	// DebugChecks serves /debug/checks when set, at most
	// DebugConcurrency requests at once (default
	// DefaultDebugConcurrency); further ones get 429 with Retry-After.
	DebugChecks      http.Handler
	DebugConcurrency int
	// Pprof serves the Go profiler under /debug/pprof/, one request at a
	// time.
	Pprof bool
	// Limits bounds the memory requests can make the agent hold and the
	// time a client may take to read a response (zero: defaults).
	Limits Limits
	// Now is the clock used to report how long a mount has been hung.
	Now func() time.Time
	// NodeName and Version name the node and the agent's version on the
	// status page (opened by node IP, it says which node it is).
	NodeName, Version string
	// Logger receives the request path's warnings (refused requests,
	// failed renderings, handler panics), at most one line per cause per
	// lograte.DefaultInterval.
	Logger *slog.Logger
}

// Routes lists the paths the router serves with the given options.
func Routes(opts Options) []string {
	r := []string{PathStatus, PathHealthz, PathReady, PathLive, PathMounts}
	if opts.Metrics != nil {
		r = append(r, PathMetrics)
	}
	if opts.DebugChecks != nil {
		r = append(r, PathDebugChecks)
	}
	if opts.Pprof {
		r = append(r, PathPprof)
	}
	return r
}

// NewRouter returns the handler for every endpoint. Only GET and HEAD are
// allowed; any other method on a route is 405. /metrics, /healthz/mounts and the status
// page are served through one response cache under opts.Limits; every
// route but the profiler answers within a write deadline, and no request
// body is read (see ignoreBodies).
func NewRouter(src Source, opts Options) http.Handler {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := lograte.Logger(opts.Logger, lograte.New(lograte.DefaultInterval, nil))
	lim := opts.Limits.WithDefaults()
	rend := rendercache.New(lim, func() any { return src.Summary() }, log)
	h := &handlers{src: src, now: opts.Now, head: newStatusHead(opts)}
	r := chi.NewRouter()
	r.Use(securityHeaders)
	r.Use(recoverer(log))
	r.Use(ignoreBodies)
	// HEAD is served by the GET handler; net/http writes no body for it.
	r.Use(middleware.GetHead)
	r.Group(func(r chi.Router) {
		r.Use(writeDeadline(lim.WriteBase))
		r.Get(PathHealthz, h.healthz)
		r.Get(PathReady, h.ready)
		r.Get(PathLive, h.live)
		r.Method(http.MethodGet, PathMounts, rend.Endpoint(http.HandlerFunc(h.mounts), nil))
		r.Method(http.MethodGet, PathStatus, rend.Endpoint(http.HandlerFunc(h.status), nil))
		if opts.Metrics != nil {
			r.Method(http.MethodGet, PathMetrics, rend.Endpoint(opts.Metrics, metricsVariant))
		}
		if opts.DebugChecks != nil {
			n := opts.DebugConcurrency
			if n <= 0 {
				n = DefaultDebugConcurrency
			}
			r.Method(http.MethodGet, PathDebugChecks, limitConcurrency(n, opts.DebugChecks))
		}
	})
	if opts.Pprof {
		// A CPU profile or trace takes as long as it is asked to: the
		// server's WriteTimeout bounds it instead.
		r.Method(http.MethodGet, PathPprof+"*", limitConcurrency(1, pprofHandler()))
	}
	r.MethodNotAllowed(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	})
	return r
}

// Limits bounds what requests can make the agent hold and how long a
// client may take to read a response; see rendercache.Limits. The zero
// value takes every default.
type Limits = rendercache.Limits

// DefaultMaxConnections is the default cap on open HTTP connections.
const DefaultMaxConnections = 256

// IdleTimeout is how long a keep-alive connection may wait for its next
// request. It is short: probes and scrapes come every few seconds at most
// and open new connections anyway, and an idle connection holds memory.
const IdleTimeout = 5 * time.Second

// Server is an http.Server that holds at most MaxConnections connections
// at once (see Serve).
type Server struct {
	*http.Server
	// MaxConnections caps the open connections (default
	// DefaultMaxConnections). Set it before Serve.
	MaxConnections int

	guard *connguard.Guard
}

// NewServer returns a Server with timeouts and header limits suited to a
// node agent probed by kubelet and scraped by Prometheus, and the default
// connection cap.
func NewServer(addr string, h http.Handler, log *slog.Logger) *Server {
	s := &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    16 << 10,
	}
	if log != nil {
		// The server's own errors (accept errors, malformed requests)
		// are caused by clients: rate-limited like every request-path log.
		s.ErrorLog = lograte.StdLogger(log, lograte.New(lograte.DefaultInterval, nil), slog.LevelWarn)
	}
	return &Server{Server: s, MaxConnections: DefaultMaxConnections}
}

// Serve accepts connections on ln and serves them. When MaxConnections
// connections are open, a new one is admitted by closing one that is idle
// or silent past a short grace, or else one busy with a single request
// for long, so that neither a flood of idle connections nor one of slow
// clients locks out the kubelet's probe; when none can be closed, the
// newcomer takes one of as many again reserve slots, which serve the
// health probes only (package connguard). Serve may be called once.
func (s *Server) Serve(ln net.Listener) error {
	max := s.MaxConnections
	if max <= 0 {
		max = DefaultMaxConnections
	}
	s.guard = connguard.New(connguard.Config{Max: max, ProbePaths: probePaths,
		Refuse: securityHeaders(http.HandlerFunc(refuseInReserve))})
	s.guard.Install(s.Server)
	return s.Server.Serve(s.guard.Listener(ln))
}

// refuseInReserve answers a request for an O(n) route on a reserve
// connection.
func refuseInReserve(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Retry-After", strconv.Itoa(int(retryAfter/time.Second)))
	text(w, http.StatusServiceUnavailable, "too many connections; retry later")
}

// ListenAndServe listens on s.Addr and calls Serve.
func (s *Server) ListenAndServe() error {
	addr := s.Addr
	if addr == "" {
		addr = ":http"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	return s.Serve(ln)
}

type handlers struct {
	src  Source
	now  func() time.Time
	head statusHead
}

func text(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	fmt.Fprintln(w, body)
}

func (h *handlers) healthz(w http.ResponseWriter, _ *http.Request) {
	s := h.src.Summary()
	if s.Healthy() {
		text(w, http.StatusOK, HealthyBody)
		return
	}
	text(w, http.StatusServiceUnavailable, "CSI Driver is unhealthy: "+describeUnhealthy(s))
}

// count is n and the noun, plural unless n is 1: "1 mount", "3 mounts".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

func describeUnhealthy(s *agent.Summary) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d of %s unhealthy", s.Unhealthy, count(s.Mounts, "mount"))
	if s.Hung > 0 {
		fmt.Fprintf(&b, " (%d hung)", s.Hung)
	}
	if len(s.UnhealthyPaths) > 0 {
		b.WriteString(": ")
		for i, p := range s.UnhealthyPaths {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(strconv.Quote(p))
		}
		if more := s.Unhealthy - len(s.UnhealthyPaths); more > 0 {
			fmt.Fprintf(&b, " and %d more", more)
		}
	}
	return b.String()
}

func (h *handlers) ready(w http.ResponseWriter, _ *http.Request) {
	s := h.src.Summary()
	if !h.src.Live() {
		text(w, http.StatusServiceUnavailable, "not ready: health monitor is not running")
		return
	}
	if s.Ready() {
		text(w, http.StatusOK, fmt.Sprintf("ready: %s healthy", count(s.Mounts, "mount")))
		return
	}
	var why []string
	if s.Pending > 0 {
		why = append(why, count(s.Pending, "mount")+" not checked yet")
	}
	if s.Unhealthy > 0 {
		why = append(why, describeUnhealthy(s))
	}
	if s.Stale > 0 {
		why = append(why, count(s.Stale, "mount")+" with a last check older than interval + timeout")
	}
	text(w, http.StatusServiceUnavailable, "not ready: "+strings.Join(why, "; "))
}

func (h *handlers) live(w http.ResponseWriter, _ *http.Request) {
	if h.src.Live() {
		text(w, http.StatusOK, "alive")
		return
	}
	text(w, http.StatusServiceUnavailable, "health monitor is not running")
}

// MountJSON is one mount in /healthz/mounts. The first seven fields are the
// documented ones; the rest add detail. MountPath, like the key of the
// mount in the response, is the path escaped by pathesc.Escape: invalid
// UTF-8 bytes as \xNN and a backslash as \\, so that distinct paths stay
// distinct keys.
type MountJSON struct {
	MountPath         string             `json:"mountPath"`
	IsHealthy         bool               `json:"isHealthy"`
	LastCheckTime     *string            `json:"lastCheckTime"`
	ResponseTimeMs    int64              `json:"responseTimeMs"`
	ErrorCount        uint64             `json:"errorCount"`
	ConsecutiveErrors uint64             `json:"consecutiveErrors"`
	LastError         string             `json:"lastError"`
	State             string             `json:"state"`
	Mode              string             `json:"mode,omitempty"`
	Reason            string             `json:"reason,omitempty"`
	FailedOperation   string             `json:"failedOperation,omitempty"`
	OperationsMs      map[string]float64 `json:"operationsMs,omitempty"`
	HungForMs         int64              `json:"hungForMs,omitempty"`
	FSType            string             `json:"fsType,omitempty"`
	// Check says which check the state comes from: "own" (the mount's
	// own full check, or its own failure), or "shared" (HEALTH_GROUP_CHECKS:
	// the mount's own transport check, with the full check of ProvenBy,
	// another mount of its group, started at ProvenAt); empty while
	// pending.
	Check    string  `json:"check,omitempty"`
	ProvenBy string  `json:"provenBy,omitempty"`
	ProvenAt *string `json:"provenAt,omitempty"`
	// What the mount is, where known (see the attribution package).
	FileSystemID string `json:"filesystemId,omitempty"`
	AccessPoint  string `json:"accessPoint,omitempty"`
	// Service is "efs" or "s3files" (Amazon S3 Files) where known.
	Service string `json:"service,omitempty"`
	PodUID  string `json:"podUid,omitempty"`
	Volume  string `json:"volume,omitempty"`
}

// ToJSON converts a status to its JSON form; now is used for hungForMs.
func ToJSON(st *agent.MountStatus, now time.Time) MountJSON {
	j := MountJSON{
		MountPath:         pathesc.Escape(st.Path),
		IsHealthy:         st.Healthy(),
		ResponseTimeMs:    st.ResponseTime.Milliseconds(),
		ErrorCount:        st.ErrorCount,
		ConsecutiveErrors: st.ConsecutiveErrors,
		LastError:         st.LastError,
		State:             string(st.State),
		Mode:              string(st.Mode),
		Reason:            string(st.Reason),
		FailedOperation:   string(st.FailedOp),
		FSType:            st.FSType,
		FileSystemID:      st.Attribution.FileSystemID,
		AccessPoint:       st.Attribution.AccessPoint,
		Service:           st.Attribution.Service,
		PodUID:            pathesc.Escape(st.Attribution.PodUID),
		Volume:            pathesc.Escape(st.Attribution.Volume),
	}
	if !st.LastCheck.IsZero() {
		t := st.LastCheck.UTC().Format(time.RFC3339)
		j.LastCheckTime = &t
	}
	if n := st.Ops.Len(); n > 0 {
		j.OperationsMs = make(map[string]float64, n)
		for op, d := range st.Ops.All() {
			j.OperationsMs[string(op)] = float64(d.Microseconds()) / 1000
		}
	}
	if st.State == agent.StateHung && !st.HungSince.IsZero() {
		j.HungForMs = now.Sub(st.HungSince).Milliseconds()
	}
	switch p := st.SharedProof; {
	case p != nil:
		at := p.At.UTC().Format(time.RFC3339)
		j.Check, j.ProvenBy, j.ProvenAt = "shared", pathesc.Escape(p.By), &at
	case !st.LastCheck.IsZero():
		j.Check = "own"
	}
	return j
}

// mounts writes the JSON object of every mount as it is encoded; it is
// served through the response cache, which compresses and buffers it.
func (h *handlers) mounts(w http.ResponseWriter, _ *http.Request) {
	sts := h.src.Statuses()
	now := h.now()
	w.Header().Set("Content-Type", "application/json")
	bw := bufio.NewWriterSize(w, 16<<10)
	bw.WriteByte('{')
	for i, st := range sts {
		k, err := json.Marshal(pathesc.Escape(st.Path))
		if err != nil {
			panic(fmt.Errorf("encode mount path: %w", err))
		}
		v, err := json.Marshal(ToJSON(st, now))
		if err != nil {
			panic(fmt.Errorf("encode mount %q: %w", st.Path, err))
		}
		if i > 0 {
			bw.WriteByte(',')
		}
		bw.Write(k)
		bw.WriteByte(':')
		bw.Write(v)
	}
	bw.WriteString("}\n")
	_ = bw.Flush()
}
