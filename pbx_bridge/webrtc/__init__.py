"""The browser phone: agents' pages as phones over WebRTC (aiortc), feeding the same
media engine as the SIP core's RTP legs (docs/browser-phone.md)."""
