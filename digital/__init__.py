"""digital"""
