"""digital/email"""
