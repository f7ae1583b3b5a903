"""SMTP client side: replies, a transcript-recording session (used by the client node, the
relay's outbound delivery and the diagnosis probes) and the customer's mail program."""
