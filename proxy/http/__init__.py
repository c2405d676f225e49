"""HTTP/1.1 on the wire: client and backend connections (llhttp), pools, headers, byte tunnels."""
