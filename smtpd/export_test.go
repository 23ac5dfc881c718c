package smtpd

// OpenConns reports the connections the server still holds (tests wait for
// a client's connection to be finished with).
func (s *Server) OpenConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}
