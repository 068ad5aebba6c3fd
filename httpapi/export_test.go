package httpapi

// Waiting is the number of the server's connections with no request in
// progress (idle or not yet sending), as its connection cap sees them.
func Waiting(s *Server) int { return s.guard.Stats().Waiting }
