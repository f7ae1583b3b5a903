"""What becomes of an accepted message: trace header, mailbox copies, the relay's queue.

`accept_message` runs at the end of DATA, after every policy said yes: it
stamps a Received header, stores a copy per local recipient (concurrently,
so that they share one group commit in the store), hands the remote
recipients to the relay's outbound queue (and, on a catch-all server, the
local recipients without a mailbox, which the queue bounces), and returns the
250 reply only once all of that is durable. The handler turns any error into a 4xx.
"""

from __future__ import annotations

import asyncio
import email.utils
import random

from aiosmtpd.smtp import Envelope, Session

from lab.nodes.mailserver.auth import client_address
from lab.nodes.mailserver.context import MailContext
from lab.nodes.mailserver.once import header_message_id
from lab.replies import S250_QUEUED


async def accept_message(
    context: MailContext,
    session: Session,
    envelope: Envelope,
    *,
    sender: str,
    encrypted: bool,
) -> str:
    """Store and queue the message of `envelope`; returns the reply once it is durable.

    Args:
        context: the server's store, queue, policy and event log.
        session: the SMTP session (client, HELO name, authentication).
        envelope: the transaction; its recipients were all accepted at RCPT.
        sender: the envelope sender ("" for the null sender).
        encrypted: whether the session runs over TLS (for the Received header).
    """
    content = envelope.content
    assert isinstance(content, bytes)  # the engine runs with decode_data=False
    recipients = list(dict.fromkeys(envelope.rcpt_tos))
    policy = context.policy
    local = list(dict.fromkeys(r.lower() for r in recipients if policy.is_local(r)))
    relayed = [r for r in recipients if not policy.is_local(r)]
    if context.config.catch_all:
        # Accepted at RCPT without a mailbox: the queue bounces them (accept-then-bounce).
        relayed += [r for r in local if not policy.has_mailbox(r)]
        local = [r for r in local if policy.has_mailbox(r)]
    # "bob+tag@" lands in bob's mailbox (a recipient delimiter); one copy per mailbox.
    local = list(dict.fromkeys(policy.mailbox_of(r) or r for r in local))
    # Unique enough to find the message in the logs; `random` is reseeded in every forked
    # worker, and costs no system call per message as `secrets` does.
    transaction = f"{random.getrandbits(48):012X}"
    trace = received_header(
        context.config.hostname, session, transaction, recipients, encrypted=encrypted
    )
    data = trace + content
    message_id = header_message_id(content)
    queue_id = None
    # Concurrently, so that the copies share one group commit in the store.
    stored = await asyncio.gather(
        *(_store(context, mailbox, data, message_id) for mailbox in local)
    )
    for mailbox, (stored_id, new) in zip(local, stored, strict=True):
        if new:
            context.events.emit("stored", mailbox=mailbox, id=stored_id, message_id=message_id)
        else:
            context.events.emit("duplicate", mailbox=mailbox, id=stored_id, message_id=message_id)
    if relayed:
        assert context.queue is not None  # RCPT refuses relaying without a queue
        queue_id = await context.queue.enqueue(
            sender=sender,
            recipients=relayed,
            data=data,
            client_address=client_address(session),
            helo=session.host_name or "",
            authenticated_as=session.auth_data if session.authenticated else None,
        )
    context.events.emit(
        "accepted",
        id=transaction,
        queue_id=queue_id,
        message_id=message_id,
        sender=sender,
        local=local,
        relayed=relayed,
        size=len(content),
        client=client_address(session),
    )
    return S250_QUEUED(queue_id=queue_id or transaction)


def received_header(
    hostname: str,
    session: Session,
    transaction: str,
    recipients: list[str],
    *,
    encrypted: bool,
) -> bytes:
    """The trace header (RFC 5321 §4.4), with the protocol named as in RFC 3848."""
    protocol = "ESMTP" if session.extended_smtp else "SMTP"
    if encrypted:
        protocol += "S"
    if session.authenticated:
        protocol += "A"
    helo = _printable(session.host_name or "unknown")
    client = client_address(session)
    lines = [
        f"Received: from {helo} ([{client}])",
        f"\tby {hostname} (smtp-lab) with {protocol} id {transaction}",
    ]
    if len(recipients) == 1:
        lines.append(f"\tfor <{_printable(recipients[0])}>")
    lines[-1] += f"; {email.utils.formatdate(localtime=True)}"
    return ("\r\n".join(lines) + "\r\n").encode("utf-8", "replace")


async def _store(
    context: MailContext, mailbox: str, data: bytes, message_id: str | None
) -> tuple[str, bool]:
    """One copy in `mailbox`; a Message-ID it already holds is not stored twice (`once.py`)."""
    if message_id is None:
        return await context.store.deliver(mailbox, data), True
    return await context.store.deliver_once(mailbox, data, message_id)


def _printable(text: str) -> str:
    """Text safe inside a header: no control characters, nothing that ends the line."""
    return "".join(char if char.isprintable() else "?" for char in text)
