"""digital/sms"""
