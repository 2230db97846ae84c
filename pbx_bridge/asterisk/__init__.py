"""pbx_bridge/asterisk"""
