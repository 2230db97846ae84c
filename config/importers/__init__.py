"""config/importers"""
