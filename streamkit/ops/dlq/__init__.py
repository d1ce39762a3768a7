"""Dead-letter operations: inspect a dead-letter topic, replay its messages.

A dead letter is the original message (key, value bytes, headers) plus the ``dlq-*``
headers that say why it was given up (:data:`streamkit.consume.dead_letter.DLQ_HEADERS`)
and its ``attempt-history`` (:mod:`streamkit.consume.history`).

:func:`inspect_dead_letters` reads the whole topic once (no group, nothing committed)
into a :class:`DeadLetterReport`: counts by reason, error type and source partition,
the oldest and newest, and a few samples with their payload decoded through the
registry when it decodes (secret-looking headers and payload fields masked).

:func:`replay_dead_letters` re-produces the selected messages to their topic with the
idempotent producer: the original key, value and headers, the event id kept, the
``dlq-*`` (and ``retry-*``) headers dropped, a ``replayed-from`` header added, the
attempt history kept. Progress is committed on the dead-letter topic by the replay's
own consumer group once the copies are acknowledged, so a second replay continues
where the first stopped and sends nothing twice. A crash between the acknowledgement
and the commit can resend at most the one batch in flight; the copies keep their event
id, so a consumer with a dedup store skips them.

Each *selection* (reason and error-type filters, ``since``) is a replay job with a group
of its own (:func:`replay_group`): messages a selection leaves out stay available to
other selections. ``until`` and ``limit`` end a run early; the next run continues there.
"""

from streamkit.ops.dlq.letters import (
    HEADER_REPLAYED_FROM,
    REASONS,
    DeadLetter,
    DeadLetterSelection,
    parse_instant,
    replay_group,
    replay_headers,
)
from streamkit.ops.dlq.replay import ReplayReport, replay_dead_letters
from streamkit.ops.dlq.summary import DeadLetterReport, DeadLetterSample, inspect_dead_letters

__all__ = [
    "HEADER_REPLAYED_FROM",
    "REASONS",
    "DeadLetter",
    "DeadLetterReport",
    "DeadLetterSample",
    "DeadLetterSelection",
    "ReplayReport",
    "inspect_dead_letters",
    "parse_instant",
    "replay_dead_letters",
    "replay_group",
    "replay_headers",
]
