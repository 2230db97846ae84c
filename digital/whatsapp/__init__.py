"""digital/whatsapp"""
