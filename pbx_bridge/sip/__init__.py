"""pbx_bridge/sip"""
