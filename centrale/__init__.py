"""centrale"""
