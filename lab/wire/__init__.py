"""What crossed a router: packet captures (docker: tcpdump in the router container), the
emulated network's own records (local), and one summary of TCP flows for both."""
