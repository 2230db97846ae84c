"""digital/webchat"""
