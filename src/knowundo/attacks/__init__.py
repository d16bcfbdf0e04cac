"""Attacks that try to bring forgotten knowledge back."""
