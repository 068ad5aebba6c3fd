package connguard

// testRoutes are the probe routes the guard's unit tests protect, as the
// agent's router passes them.
var testRoutes = probeRoutes{"/healthz", "/healthz/ready", "/healthz/live"}

// newTestLimiter is a limiter of max slots protecting testRoutes.
func newTestLimiter(max int) *limiter { return newLimiter(max, testRoutes) }
