"""pbx_bridge"""
