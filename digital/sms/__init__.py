"""Twilio Programmable Messaging: SMS and Twilio's WhatsApp, one adapter."""
