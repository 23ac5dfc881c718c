package smtpd

// OpenConns reports the connections the server still holds (tests wait for
// a client's connection to be finished with).
func (s *Server) OpenConns() int { return s.fe.OpenConns() }
