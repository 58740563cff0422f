package server

import "net"

// sipFilter is the stack's read filter: the packet guard, then the ACKs,
// BYEs and BYE answers the proxy forwards (or drops) without a sipgo
// transaction (proxy.Take). s.Proxy is set before the stack starts reading.
func (s *Server) sipFilter(transport string, remote net.Addr, data []byte) []byte {
	data = s.Guard.Filter(transport, remote, data)
	if data == nil {
		return nil
	}
	if s.Proxy != nil && s.Proxy.Take(transport, remote, data) {
		return nil
	}
	return data
}
