"""Media of the embedded voice core: G.711, audio files, RTP sessions, and the
bridge / mixer / tap built on abstract legs (see docs/voice.md, "Media layer").
Knows RTP payloads, never SIP: `sip/` (and later `webrtc/`) feed it legs."""
