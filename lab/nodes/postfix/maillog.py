"""Postfix's maillog as the lab's delivery events, without I/O.

A Postfix node logs text (`maillog_file = /dev/stdout`, the container log), the
lab's own servers log JSON events (`lab.nodes.events`); the diagnosis follows a
message through the events. `delivery_events` reads the log lines Postfix writes
about a message and gives the events the lab's queue would have written:

- cleanup's `QID: message-id=<...>` -> `queued` (the message is in this queue);
- smtp's `connect to host[addr]:port: reason` -> a `delivery-attempt` that reached
  no server (4.4.1), for the queue entry the same smtp process names next: the line
  itself carries no queue id;
- smtp's `QID: to=<r>, relay=host[addr]:port, ..., dsn=X.Y.Z, status=S (text)` ->
  a `delivery-attempt` with the recipient's result, then `delivered`, `deferred` or
  `bounced` (relay=none: every host failed, only the connect lines were attempts);
- qmgr's `QID: ..., status=expired, returned to sender` -> `expired`.

Local delivery (relay=virtual, local) is a mailbox, not a hand-off: such an entry is
not reported as queued on the way, as the lab's mx logs none either. Each line is
read with the timestamp docker gives it (`docker logs --timestamps`), so events of
Postfix nodes and of the lab's own sort on one clock.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

# docker's RFC 3339 timestamp (nanoseconds), then Postfix's own syslog-style line.
_LINE = re.compile(
    r"^(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?P<fraction>\.\d+)?Z\s+"
    r".*?\bpostfix/(?P<program>[a-z-]+)\[(?P<pid>\d+)\]:\s+(?P<message>.*)$"
)
_MESSAGE_ID = re.compile(r"^(?P<qid>[0-9A-F]+): message-id=(?P<id>\S+)")
_CONNECT = re.compile(
    r"^connect to (?P<host>[^\[\s]+)\[(?P<address>[^\]]+)\]:(?P<port>\d+): (?P<why>.+)$"
)
_RESULT = re.compile(
    r"^(?P<qid>[0-9A-F]+): to=<(?P<rcpt>[^>]*)>,(?: orig_to=<[^>]*>,)? relay=(?P<relay>[^,]+),"
    r".*?\bdsn=(?P<dsn>\d\.\d{1,3}\.\d{1,3}), status=(?P<status>\w+) \((?P<text>.*)\)$"
)
_RELAY = re.compile(r"^(?P<host>[^\[]+)\[(?P<address>[^\]]+)\]:(?P<port>\d+)$")
_EXPIRED = re.compile(r"^(?P<qid>[0-9A-F]+): from=<[^>]*>, status=expired")
_REPLY_CODE = re.compile(r"^(?P<code>[2-5]\d\d)[ -]")
_FATES = {"sent": "delivered", "deferred": "deferred", "bounced": "bounced"}
_OUTCOMES = {"sent": "delivered", "deferred": "deferred", "bounced": "failed"}
CONNECT_FAILED = "4.4.1"  # RFC 3463: no answer from host


def delivery_events(log: str) -> list[dict[str, Any]]:
    """The delivery events in `log` (docker's timestamped container output), oldest first."""
    reader = _Reader()
    for line in log.splitlines():
        match = _LINE.match(line.strip())
        if match is not None:
            reader.read(_timestamp(match), match["program"], match["pid"], match["message"])
    return reader.events()


def _timestamp(match: re.Match[str]) -> float:
    whole = datetime.fromisoformat(match["ts"] + "+00:00").timestamp()
    return whole + float(match["fraction"] or 0.0)


class _Reader:
    """The events so far, and per smtp process the connections it failed to make."""

    def __init__(self) -> None:
        self._events: list[dict[str, Any]] = []
        self._failed_connects: dict[str, list[dict[str, Any]]] = {}
        self._deferrals: dict[str, int] = {}
        self._local: set[str] = set()  # queue ids delivered into a mailbox here

    def events(self) -> list[dict[str, Any]]:
        return [
            event
            for event in self._events
            if not (event["event"] == "queued" and event["queue_id"] in self._local)
        ]

    def read(self, ts: float, program: str, pid: str, message: str) -> None:
        if program == "cleanup" and (found := _MESSAGE_ID.match(message)):
            self._emit(ts, "queued", queue_id=found["qid"], message_id=found["id"])
        elif program == "qmgr" and (found := _EXPIRED.match(message)):
            self._emit(ts, "expired", queue_id=found["qid"])
        elif program in ("smtp", "lmtp") and (found := _CONNECT.match(message)):
            self._failed_connects.setdefault(pid, []).append(
                {
                    "ts": ts,
                    "host": found["host"],
                    "address": found["address"],
                    "port": int(found["port"]),
                    "code": None,
                    "enhanced": CONNECT_FAILED,
                    "text": message,
                    "results": {},
                }
            )
        elif found := _RESULT.match(message):
            self._result(ts, program, pid, found)

    def _result(self, ts: float, program: str, pid: str, found: re.Match[str]) -> None:
        qid, recipient, status = found["qid"], found["rcpt"], found["status"]
        relay = _RELAY.match(found["relay"].strip())
        if relay is None and found["relay"].strip() in ("virtual", "local"):
            self._local.add(qid)
            return
        for attempt in self._failed_connects.pop(pid, []):
            self._emit(
                attempt.pop("ts"),
                "delivery-attempt",
                queue_id=qid,
                recipients=[recipient],
                **attempt,
            )
        text = found["text"]
        if relay is not None:
            code = _REPLY_CODE.match(text)
            self._emit(
                ts,
                "delivery-attempt",
                queue_id=qid,
                recipients=[recipient],
                host=relay["host"],
                address=relay["address"],
                port=int(relay["port"]),
                code=int(code["code"]) if code else None,
                enhanced=found["dsn"],
                text=text,
                results={
                    recipient: {
                        "outcome": _OUTCOMES.get(status, status),
                        "status": found["dsn"],
                        "reply": text,
                    }
                },
            )
        fate = _FATES.get(status)
        if fate == "delivered":
            host = relay["host"] if relay else None
            self._emit(ts, fate, queue_id=qid, recipient=recipient, host=host, reply=text)
        elif fate == "deferred":
            self._deferrals[qid] = self._deferrals.get(qid, 0) + 1
            self._emit(
                ts,
                fate,
                queue_id=qid,
                recipient=recipient,
                status=found["dsn"],
                reason=text,
                attempt=self._deferrals[qid],
            )
        elif fate == "bounced":
            self._emit(
                ts, fate, queue_id=qid, recipient=recipient, status=found["dsn"], reason=text
            )

    def _emit(self, ts: float, event: str, **fields: Any) -> None:
        self._events.append({"ts": ts, "event": event, "source": "maillog", **fields})
