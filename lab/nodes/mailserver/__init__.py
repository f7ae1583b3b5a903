"""The relay and mx node programs: inbound SMTP (aiosmtpd), mailboxes, and the relay's queue.

`server.start` runs a configured server in the current event loop; `server.serve`
is what `python -m lab.nodes relay|mx config.json` runs.
"""
