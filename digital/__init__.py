"""Digital channels: WhatsApp Cloud API, Twilio SMS/WhatsApp, webchat and e-mail.

`build(...)` wires every enabled channel in one call for the composition root; see
docs/channels.md for what goes where.
"""

from digital.factory import DigitalChannels, build

__all__ = ["DigitalChannels", "build"]
